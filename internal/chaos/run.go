package chaos

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgpassfile"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// Fault is one of the faults a run injects in turn.
type Fault string

// The faults.
const (
	// RestartPgBouncer stops PgBouncer at once and starts it again.
	RestartPgBouncer Fault = "restart-pgbouncer"
	// RestartPostgres stops PostgreSQL (fast shutdown), keeps it down a
	// moment and starts it again.
	RestartPostgres Fault = "restart-postgres"
	// KillServer kills the API server (SIGKILL) and starts it again.
	KillServer Fault = "kill-server"
	// StallNetwork holds every byte between the server and the databases
	// for a few seconds.
	StallNetwork Fault = "stall-network"
)

// AllFaults is the default cycle.
var AllFaults = []Fault{RestartPgBouncer, RestartPostgres, KillServer, StallNetwork}

// Options configure a run. Zero values take the defaults noted.
type Options struct {
	// Root is the repository's root (for deploy/local); required.
	Root string
	// Instance is the PostgreSQL and PgBouncer to break (default
	// ChaosInstance(Root)); Database the database on it (default
	// publicdigit; tests use publicdigit_test, whose PgBouncer pool has 2
	// server connections).
	Instance *Instance
	Database string
	// Duration is how long faults are injected (default 90s); the load
	// runs a few seconds longer on both sides.
	Duration time.Duration
	// Tenants, Writers and Readers size the load (default 12, 6, 6); Pace
	// is each client's pause between requests (default 10ms).
	Tenants, Writers, Readers int
	Pace                      time.Duration
	// Faults is the cycle of faults, injected one after the other with
	// FaultGap between them (defaults AllFaults, 3s).
	Faults   []Fault
	FaultGap time.Duration
	// Terminate ends a random backend of the application role every
	// 200–600 ms while faults are injected (off when false).
	Terminate bool
	// StallFor, PostgresDown and PgBouncerDown size the faults (defaults
	// 3s, 2s, 0.5s).
	StallFor, PostgresDown, PgBouncerDown time.Duration
	// RequestTimeout is the server's http.request_timeout (default 5s);
	// a client gives up 3s later, and that counts as a hang.
	RequestTimeout time.Duration
	// ServerCommand returns the command that runs the server (Serve),
	// without output; the run's PD_… variables and this process's
	// environment are added to its Env. Required.
	ServerCommand func() *exec.Cmd
	// LogDir keeps the server's log (default a new temporary folder).
	LogDir string
	// SampleServer samples the server's memory and goroutines early and
	// late in the run (make soak).
	SampleServer bool
	// Out receives progress lines (default io.Discard).
	Out io.Writer
}

func (o *Options) setDefaults() error {
	if o.Root == "" || o.ServerCommand == nil {
		return errors.New("chaos: Root and ServerCommand are required")
	}
	if o.Instance == nil {
		in := ChaosInstance(o.Root)
		o.Instance = &in
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	if o.Database == "" {
		o.Database = "publicdigit"
	}
	def(&o.Duration, 90*time.Second)
	defInt(&o.Tenants, 12)
	defInt(&o.Writers, 6)
	defInt(&o.Readers, 6)
	def(&o.Pace, 10*time.Millisecond)
	if o.Faults == nil {
		o.Faults = AllFaults
	}
	def(&o.FaultGap, 3*time.Second)
	def(&o.StallFor, 3*time.Second)
	def(&o.PostgresDown, 2*time.Second)
	def(&o.PgBouncerDown, 500*time.Millisecond)
	def(&o.RequestTimeout, 5*time.Second)
	if o.Out == nil {
		o.Out = io.Discard
	}
	return nil
}

// FaultResult is what one injected fault did.
type FaultResult struct {
	Fault Fault
	// Err is the injection's own failure (a server that did not restart).
	Err error
	// NotReady: /readyz failed (or did not answer) during the fault.
	NotReady bool
	// Recovered: /readyz answered 200 again, RecoveredIn after the fault
	// was injected.
	Recovered   bool
	RecoveredIn time.Duration
}

// Sample is the server's memory and goroutines at one moment (/metrics).
type Sample struct {
	Goroutines float64
	RSS        float64 // bytes
	HeapInuse  float64 // bytes
}

// Report is what a run saw.
type Report struct {
	Requests, Acked, Retryable, Down, Bad, Hung int64
	// Lost counts acknowledged writes that are missing afterwards, Dup those
	// present more than once; Leaks rows seen by or written to the wrong
	// tenant (and acknowledged members not found on read).
	Lost, Dup, Leaks int64
	Faults           []FaultResult
	// Samples are the first failures seen by clients.
	Samples []string
	// ServerFailures counts the failures the server logged, by status and
	// code; Causes has one logged cause of each.
	ServerFailures map[string]int
	Causes         map[string]string
	Start, End     *Sample
	// Ready: the server answered /readyz 200 at the end.
	Ready   bool
	LogPath string
}

// OK reports whether the run found nothing wrong.
func (r Report) OK() bool {
	if r.Lost != 0 || r.Dup != 0 || r.Leaks != 0 || r.Bad != 0 || r.Hung != 0 || !r.Ready || r.Acked == 0 {
		return false
	}
	for _, f := range r.Faults {
		if f.Err != nil || !f.Recovered {
			return false
		}
	}
	return true
}

// Summary is the one-line result, prefixed with kind (chaos, soak).
func (r Report) Summary(kind string) string {
	if kind == "soak" {
		return fmt.Sprintf("soak requests=%d acked=%d lost=%d leaks=%d", r.Requests, r.Acked, r.Lost+r.Dup, r.Leaks)
	}
	return fmt.Sprintf("%s requests=%d acked=%d retryable=%d lost=%d leaks=%d", kind, r.Requests, r.Acked, r.Retryable, r.Lost+r.Dup, r.Leaks)
}

// Write prints the report: the summary line, then the details.
func (r Report) Write(w io.Writer, kind string) {
	fmt.Fprintln(w, r.Summary(kind))
	fmt.Fprintf(w, "  retryable (503 or 429, + Retry-After): %d; no answer while the server was down on purpose: %d; other failures: %d; hangs past the deadline: %d; duplicated: %d\n",
		r.Retryable, r.Down, r.Bad, r.Hung, r.Dup)
	for _, f := range r.Faults {
		state := fmt.Sprintf("readyz failed during it: %v; ready again after %s", f.NotReady, f.RecoveredIn.Round(10*time.Millisecond))
		if !f.Recovered {
			state = "NOT RECOVERED"
		}
		if f.Err != nil {
			state += "; error: " + f.Err.Error()
		}
		fmt.Fprintf(w, "  fault %-18s %s\n", f.Fault, state)
	}
	for _, k := range sortedKeys(r.ServerFailures) {
		fmt.Fprintf(w, "  server answered %s: %d (e.g. %s)\n", k, r.ServerFailures[k], truncate(r.Causes[k], 160))
	}
	for _, s := range r.Samples {
		fmt.Fprintf(w, "  failure: %s\n", s)
	}
	if r.Start != nil && r.End != nil {
		fmt.Fprintf(w, "  server goroutines start=%.0f end=%.0f; rss start=%.1fMiB end=%.1fMiB; heap in use start=%.1fMiB end=%.1fMiB\n",
			r.Start.Goroutines, r.End.Goroutines, r.Start.RSS/(1<<20), r.End.RSS/(1<<20), r.Start.HeapInuse/(1<<20), r.End.HeapInuse/(1<<20))
	}
	fmt.Fprintf(w, "  server log: %s\n", r.LogPath)
}

// run is one run in progress.
type run struct {
	o        Options
	logMu    sync.Mutex // logf is called from the load's goroutines too
	base     config.Config
	id       string
	bouncer  *Proxy // the server's way to PgBouncer
	postgres *Proxy // the server's direct way to PostgreSQL
	srv      *serverProcess
	a        *app.App // the run's own App, beside the proxies: setup, checks, cleanup
	tenants  []tenantRef
	platform string
	tokenIDs []string // made by the run, deleted at its end
	tally    tally
	ledger   *ledger
	down     downWindows
	report   Report
}

// Run injects faults while clients write and read through the API, then
// checks what they saw; see Report. It restores everything it broke before
// it returns, also when ctx ends early. The error is for a run that could
// not be set up or checked; a run that found faults returns a Report that
// is not OK.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	if err := o.setDefaults(); err != nil {
		return Report{}, err
	}
	base, err := config.Load(nil)
	if err != nil {
		return Report{}, err
	}
	var idb [3]byte
	_, _ = crand.Read(idb[:])
	r := &run{o: o, base: base, id: hex.EncodeToString(idb[:]), ledger: newLedger()}
	defer func() {
		r.restore(ctx)
		rep = r.report
	}()
	if err = r.setUp(ctx); err != nil {
		return
	}
	r.load(ctx)
	err = r.check(ctx)
	return
}

func (r *run) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.o.Out, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// setUp starts the instance, the relays, the run's App and the server, and
// creates the tenants through the API.
func (r *run) setUp(ctx context.Context) error {
	in := r.o.Instance
	r.logf("starting PostgreSQL and PgBouncer (instance %s: ports %s, %s)", in.Name, in.PGPort, in.BouncerPort)
	if err := in.Up(ctx); err != nil {
		return err
	}
	var err error
	if r.bouncer, err = NewProxy("127.0.0.1:0", "127.0.0.1:"+in.BouncerPort); err != nil {
		return err
	}
	if r.postgres, err = NewProxy("127.0.0.1:0", "127.0.0.1:"+in.PGPort); err != nil {
		return err
	}
	if err := r.openApp(ctx); err != nil {
		return err
	}
	secret, tok, err := r.a.Tokens.Create(ctx, access.CreateRequest{Name: "pdchaos " + r.id, Kind: access.KindPlatform})
	if err != nil {
		return fmt.Errorf("platform token: %w", err)
	}
	r.platform = secret
	r.tokenIDs = append(r.tokenIDs, tok.ID)
	if err := r.startServer(ctx); err != nil {
		return err
	}
	return r.createTenants(ctx)
}

// urls builds the application role's URL through PgBouncer and the admin
// role's direct URL on port numbers of the run's choice.
// The URLs carry the password the local password file has for the
// instance's own port (PostgreSQL's or PgBouncer's), if the configuration
// has none: the proxies' ports are not in that file.
func (r *run) urls(bouncerPort, pgPort string) (appURL, adminURL, appDirect string, err error) {
	set := func(raw, port, realPort string) (string, error) {
		u, err := url.Parse(raw)
		if err != nil {
			return "", fmt.Errorf("config: %s: %w", config.Redact(raw), err)
		}
		u.Host = net.JoinHostPort("127.0.0.1", port)
		u.Path = "/" + r.o.Database
		if _, ok := u.User.Password(); u.User != nil && !ok {
			if pw := r.localPassword(realPort, u.User.Username()); pw != "" {
				u.User = url.UserPassword(u.User.Username(), pw)
			}
		}
		return u.String(), nil
	}
	in := r.o.Instance
	if appURL, err = set(r.base.Landlord.URL, bouncerPort, in.BouncerPort); err != nil {
		return
	}
	if adminURL, err = set(r.base.Admin.URL, pgPort, in.PGPort); err != nil {
		return
	}
	appDirect, err = set(r.base.Landlord.URL, pgPort, in.PGPort)
	return
}

// localPassword is the password of user on the instance's port in the
// local password file (PGPASSFILE, else the checkout's .data/pgpass that
// deploy/local/db-up.sh writes), or "".
func (r *run) localPassword(port, user string) string {
	path := os.Getenv("PGPASSFILE")
	if path == "" {
		path = filepath.Join(r.o.Root, ".data", "pgpass")
	}
	pf, err := pgpassfile.ReadPassfile(path)
	if err != nil {
		return ""
	}
	return pf.FindPassword("127.0.0.1", port, r.o.Database, user)
}

// openApp opens the run's own App, straight to the instance, and applies
// the landlord catalog with the built-in modules.
func (r *run) openApp(ctx context.Context) error {
	appURL, adminURL, _, err := r.urls(r.o.Instance.BouncerPort, r.o.Instance.PGPort)
	if err != nil {
		return err
	}
	cfg := r.base
	cfg.Landlord = config.Landlord{URL: appURL}
	cfg.Admin = config.Conn{URL: adminURL}
	cfg.DefaultCluster = "main"
	cfg.Clusters = map[string]config.Cluster{"main": {URL: appURL, AdminURL: adminURL, PgBouncer: config.DefaultPgBouncer}}
	cfg.Tenant.WarmPool = 0
	if r.a, err = app.Open(ctx, cfg, zerolog.Nop(), app.Options{SparePrefix: "pd_chaosspare_"}); err != nil {
		return err
	}
	if _, err := schemaapply.Apply(ctx, r.a.Admin, schemaapply.Landlord(cfg.Tenant.AppRole), schemaapply.Options{}); err != nil {
		return fmt.Errorf("landlord catalog: %w", err)
	}
	if _, err := modules.Register(ctx, r.a.Admin); err != nil {
		return fmt.Errorf("landlord catalog: %w", err)
	}
	return nil
}

// startServer starts the server process on a free port, reaching the
// databases through the relays.
func (r *run) startServer(ctx context.Context) error {
	appURL, adminURL, appDirect, err := r.urls(r.bouncer.Port(), r.postgres.Port())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := r.o.LogDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "pdchaos-"); err != nil {
			return err
		}
	}
	r.report.LogPath = filepath.Join(dir, "server-"+r.id+".log")
	r.srv = &serverProcess{
		command: r.o.ServerCommand,
		base:    "http://" + addr,
		logPath: r.report.LogPath,
		env: []string{
			"PD_LANDLORD__URL=" + appURL,
			"PD_LANDLORD__LISTEN_URL=" + appDirect,
			"PD_ADMIN__URL=" + adminURL,
			"PD_DEFAULT_CLUSTER=main",
			"PD_CLUSTERS__MAIN__URL=" + appURL,
			"PD_CLUSTERS__MAIN__ADMIN_URL=" + adminURL,
			"PD_CLUSTERS__MAIN__PGBOUNCER=" + config.DefaultPgBouncer,
			"PD_HTTP__ADDR=" + addr,
			"PD_HTTP__REQUEST_TIMEOUT=" + r.o.RequestTimeout.String(),
			// Cursors stay valid across the server's restarts.
			"PD_HTTP__CURSOR_SECRET=pdchaos cursor secret, 32 bytes or more",
			"PD_TENANT__WARM_POOL=2",
			"PD_LOG__FORMAT=json",
			"PD_LOG__LEVEL=warn",
		},
	}
	r.logf("starting the server on %s (log %s)", addr, r.report.LogPath)
	return r.srv.start(ctx)
}

// createTenants provisions the run's tenants through the API and gives
// each a token of its own.
func (r *run) createTenants(ctx context.Context) error {
	c := &http.Client{Timeout: time.Minute}
	for i := 0; i < r.o.Tenants; i++ {
		slug := fmt.Sprintf("chaos_%s_%d", r.id, i)
		a, err := postJSON(ctx, c, r.srv.base+"/api/v1/platform/tenants", r.platform,
			map[string]string{"slug": slug, "name": "Chaos tenant " + slug})
		if err != nil {
			return fmt.Errorf("create tenant %s: %w", slug, err)
		}
		var t struct {
			ID     string `json:"id"`
			Schema string `json:"schema_name"`
		}
		if err := json.Unmarshal(a, &t); err != nil || t.ID == "" || t.Schema == "" {
			return fmt.Errorf("create tenant %s: %s", slug, truncate(string(a), 300))
		}
		secret, tok, err := r.a.Tokens.Create(ctx, access.CreateRequest{Name: "pdchaos " + slug, Kind: access.KindTenant, Tenant: tenant.MustSlug(slug)})
		if err != nil {
			return fmt.Errorf("token for %s: %w", slug, err)
		}
		r.tokenIDs = append(r.tokenIDs, tok.ID)
		r.tenants = append(r.tenants, tenantRef{slug: slug, id: t.ID, schema: t.Schema, token: secret})
	}
	r.logf("created %d tenants through the API", len(r.tenants))
	return nil
}

func postJSON(ctx context.Context, c *http.Client, url, token string, body any) ([]byte, error) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(raw)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("%d %s", resp.StatusCode, truncate(string(out), 300))
	}
	return out, nil
}

// load runs the clients while the faults are injected, then a few calm
// seconds more.
func (r *run) load(ctx context.Context) {
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	c := &client{
		base:     r.srv.base,
		http:     &http.Client{Timeout: r.o.RequestTimeout + 3*time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: r.o.Writers + r.o.Readers}},
		tally:    &r.tally,
		down:     &r.down,
		platform: r.platform,
	}
	var wg sync.WaitGroup
	for i := 0; i < r.o.Writers; i++ {
		w := &writer{id: i, c: c, tenants: r.tenants, ledger: r.ledger, pace: r.o.Pace}
		wg.Add(1)
		go func() { defer wg.Done(); w.run(loadCtx) }()
	}
	for i := 0; i < r.o.Readers; i++ {
		rd := &reader{c: c, tenants: r.tenants, ledger: r.ledger, pace: r.o.Pace}
		wg.Add(1)
		go func() { defer wg.Done(); rd.run(loadCtx) }()
	}
	r.logf("load: %d writers, %d readers over %d tenants", r.o.Writers, r.o.Readers, len(r.tenants))
	pause(ctx, 3*time.Second)
	if r.o.SampleServer {
		pause(ctx, 20*time.Second) // warmed up
		r.report.Start = r.sample(ctx)
	}

	faultCtx, stopFaults := context.WithTimeout(ctx, r.o.Duration)
	var twg sync.WaitGroup
	if r.o.Terminate {
		twg.Add(1)
		go func() { defer twg.Done(); r.terminate(faultCtx) }()
	}
	for i := 0; faultCtx.Err() == nil && len(r.o.Faults) > 0; i++ {
		f := r.o.Faults[i%len(r.o.Faults)]
		res := r.inject(faultCtx, f)
		r.report.Faults = append(r.report.Faults, res)
		r.logf("fault %s: readyz failed during it: %v, ready again after %s (requests so far %d, retryable %d, failures %d)",
			f, res.NotReady, res.RecoveredIn.Round(10*time.Millisecond), r.tally.requests.Load(), r.tally.retryable.Load(), r.tally.bad.Load())
		if res.Err != nil {
			r.logf("fault %s: %v", f, res.Err)
		}
		pause(faultCtx, r.o.FaultGap)
	}
	<-faultCtx.Done()
	stopFaults()
	twg.Wait()
	pause(ctx, 3*time.Second) // calm: everything answers again
	if r.o.SampleServer {
		r.report.End = r.sample(ctx)
	}
	stopLoad()
	wg.Wait()
}

// inject runs one fault while watching /readyz, then waits (up to a
// minute) for /readyz to answer 200 again.
func (r *run) inject(ctx context.Context, f Fault) FaultResult {
	res := FaultResult{Fault: f}
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	notReady := make(chan bool, 1)
	go func() {
		seen := false
		for watchCtx.Err() == nil {
			if status(watchCtx, r.srv.base+"/readyz") != http.StatusOK {
				seen = true
			}
			pause(watchCtx, 100*time.Millisecond)
		}
		notReady <- seen
	}()
	start := time.Now()
	// A fault is injected whole even when the run's time is up meanwhile.
	fctx := context.WithoutCancel(ctx)
	switch f {
	case RestartPgBouncer:
		res.Err = r.o.Instance.RestartPgBouncer(fctx, r.o.PgBouncerDown)
	case RestartPostgres:
		res.Err = r.o.Instance.RestartPostgres(fctx, r.o.PostgresDown)
	case KillServer:
		r.down.open()
		r.srv.kill()
		pause(fctx, 500*time.Millisecond)
		res.Err = r.srv.start(fctx)
		r.down.close()
	case StallNetwork:
		r.bouncer.Stall()
		r.postgres.Stall()
		pause(fctx, r.o.StallFor)
		r.bouncer.Resume()
		r.postgres.Resume()
	default:
		res.Err = fmt.Errorf("unknown fault %q", f)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if status(fctx, r.srv.base+"/readyz") == http.StatusOK {
			res.Recovered, res.RecoveredIn = true, time.Since(start)
			break
		}
		pause(fctx, 100*time.Millisecond)
	}
	stopWatch()
	res.NotReady = <-notReady
	return res
}

// terminate ends a random backend of the application role every few
// hundred milliseconds, on a connection of its own (never through the
// relays).
func (r *run) terminate(ctx context.Context) {
	n := 0
	defer func() { r.logf("terminated %d backends", n) }()
	for ctx.Err() == nil {
		pause(ctx, 200*time.Millisecond+rand.N(400*time.Millisecond))
		var ok bool
		err := r.a.Admin.QueryRowContext(ctx, `
			SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM (
				SELECT pid FROM pg_stat_activity
				 WHERE usename = $1 AND datname = $2 AND pid <> pg_backend_pid()
				 ORDER BY random() LIMIT 1) victim`,
			r.base.Tenant.AppRole, r.o.Database).Scan(&ok)
		if err == nil && ok {
			n++
		}
	}
}

// sample reads the server's goroutines and memory from /metrics.
func (r *run) sample(ctx context.Context) *Sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.srv.base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil
	}
	s := &Sample{}
	for _, line := range strings.Split(string(raw), "\n") {
		var v float64
		switch {
		case scan(line, "go_goroutines", &v):
			s.Goroutines = v
		case scan(line, "process_resident_memory_bytes", &v):
			s.RSS = v
		case scan(line, "go_memstats_heap_inuse_bytes", &v):
			s.HeapInuse = v
		}
	}
	return s
}

func scan(line, name string, v *float64) bool {
	rest, ok := strings.CutPrefix(line, name+" ")
	if !ok {
		return false
	}
	_, err := fmt.Sscan(rest, v)
	return err == nil
}

// check verifies every acknowledged write against the tenants' tables (on
// the run's own direct connection) and fills the report.
func (r *run) check(ctx context.Context) error {
	r.report.Ready = status(ctx, r.srv.base+"/readyz") == http.StatusOK
	for _, t := range r.tenants {
		if err := r.checkTenant(ctx, t); err != nil {
			return err
		}
	}
	r.report.Requests = r.tally.requests.Load()
	r.report.Acked = r.tally.acked.Load()
	r.report.Retryable = r.tally.retryable.Load()
	r.report.Down = r.tally.down.Load()
	r.report.Bad = r.tally.bad.Load()
	r.report.Hung = r.tally.hung.Load()
	r.report.Leaks += r.tally.leaks.Load()
	r.tally.mu.Lock()
	r.report.Samples = append(r.report.Samples, r.tally.samples...)
	r.tally.mu.Unlock()
	return nil
}

func (r *run) checkTenant(ctx context.Context, t tenantRef) error {
	rows, err := r.a.Admin.QueryContext(ctx, `SELECT id::text, tenant_id::text, coalesce(email, '') FROM `+
		pgx.Identifier{t.schema, "members"}.Sanitize())
	if err != nil {
		return fmt.Errorf("check %s: %w", t.slug, err)
	}
	byEmail := map[string][]string{}
	for rows.Next() {
		var id, tenantID, email string
		if err := rows.Scan(&id, &tenantID, &email); err != nil {
			rows.Close()
			return fmt.Errorf("check %s: %w", t.slug, err)
		}
		if tenantID != t.id || email != "" && !strings.HasSuffix(email, t.domain()) {
			r.report.Leaks++
			r.report.Samples = append(r.report.Samples, fmt.Sprintf("tenant %s holds member %s (%s) of another tenant", t.slug, id, email))
		}
		byEmail[email] = append(byEmail[email], id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check %s: %w", t.slug, err)
	}
	r.ledger.mu.Lock()
	acked := r.ledger.members[t.slug]
	cards := r.ledger.cards[t.slug]
	r.ledger.mu.Unlock()
	for email, id := range acked {
		found := byEmail[email]
		switch {
		case len(found) == 0:
			r.report.Lost++
			r.report.Samples = append(r.report.Samples, fmt.Sprintf("tenant %s: acknowledged member %s is missing", t.slug, email))
		case len(found) > 1:
			r.report.Dup++
		case id != "" && found[0] != id:
			r.report.Lost++
			r.report.Samples = append(r.report.Samples, fmt.Sprintf("tenant %s: member %s has id %s, acknowledged %s", t.slug, email, found[0], id))
		}
	}
	for _, id := range cards {
		var n int
		if err := r.a.Admin.QueryRowContext(ctx, `SELECT count(*) FROM `+pgx.Identifier{t.schema, "digital_cards"}.Sanitize()+
			` WHERE id = $1::text::uuid AND tenant_id = $2::text::uuid`, id, t.id).Scan(&n); err != nil {
			return fmt.Errorf("check %s: %w", t.slug, err)
		}
		if n != 1 {
			r.report.Lost++
			r.report.Samples = append(r.report.Samples, fmt.Sprintf("tenant %s: acknowledged card %s found %d times", t.slug, id, n))
		}
	}
	return nil
}

// restore stops the server, purges the run's tenants, drops its tokens and
// brings the instance back, whatever happened before (and also when ctx
// ended early).
func (r *run) restore(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancel()
	if r.bouncer != nil {
		r.bouncer.Resume()
		r.postgres.Resume()
	}
	if r.srv != nil {
		r.srv.stop()
		r.report.ServerFailures, r.report.Causes, _ = serverFailures(r.report.LogPath)
	}
	if err := r.o.Instance.Restore(ctx); err != nil {
		r.logf("restore %s: %v", r.o.Instance.Name, err)
	}
	if r.a != nil {
		// The run's own pools may hold connections that a fault broke:
		// each step is tried a few times.
		for _, id := range r.tokenIDs {
			if err := retry(ctx, func() error { return access.Delete(ctx, r.a.Admin, id) }); err != nil {
				r.logf("token %s: %v", id, err)
			}
		}
		for _, t := range r.tenants {
			slug := tenant.MustSlug(t.slug)
			err := retry(ctx, func() error {
				_, err := r.a.Catalog.Delete(ctx, slug)
				if errors.Is(err, tenant.ErrWrongStatus) {
					return nil // deleted by an earlier try
				}
				return err
			})
			if err == nil {
				err = retry(ctx, func() error { return r.a.Provisioner.Purge(ctx, slug) })
			}
			if err != nil {
				r.logf("purge %s: %v", t.slug, err)
			}
		}
		r.a.Close()
	}
	if r.bouncer != nil {
		r.bouncer.Close()
		r.postgres.Close()
	}
}

// retry runs fn up to five times, half a second apart, until it succeeds.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
		pause(ctx, 500*time.Millisecond)
	}
	return err
}
