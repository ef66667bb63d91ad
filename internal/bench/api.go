package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/cards"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/pgroute"
	"github.com/publicdigit/publicdigit/internal/server"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// apiCase is one way of serving one of the three requests.
type apiCase struct {
	name string // get-stack, get-bare, issue-stack, issue-bare, vote-stack, vote-bare
	run  func(ctx context.Context, id uuid.UUID) error
}

// runAPI serves the tenant API with server.Run (HTTP → Fiber → request id,
// metrics, access log → bearer auth → tenant resolution → scoped router →
// PgBouncer → PostgreSQL) and, in the same process, a bare Fiber app that
// runs the same statements schema-qualified on a plain pool with the same
// settings, both on a scratch database; an in-process keep-alive client
// drives each at the same concurrency, alternating the order per round.
func runAPI(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	dur := fs.Duration("duration", 1500*time.Millisecond, "length of one measurement")
	rounds := fs.Int("rounds", 9, "rounds; each measures both sides of every case back to back (the median of the per-round ratios is reported)")
	conc := fs.Int("conc", 32, "concurrent clients")
	nMembers := fs.Int("members", 1000, "members (and pre-issued cards) in the bench tenant")
	bareMode := fs.String("bare-mode", "simple", "exec mode of the bare pool: simple (as the tenant pools) or exec (extended protocol)")
	only := fs.String("only", "", "run only this case (get-stack, get-bare, issue-stack, issue-bare, vote-stack, vote-bare), for profiling")
	nElections := fs.Int("elections", 200, "open elections in the bench tenant (each member votes once in each: members × elections ballots at most)")
	profile := fs.String("cpuprofile", "", "with -only: write a CPU profile of that case to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	mode := pgx.QueryExecModeSimpleProtocol
	switch *bareMode {
	case "simple":
	case "exec":
		mode = pgx.QueryExecModeExec
	default:
		return fmt.Errorf("-bare-mode must be simple or exec")
	}
	cfg, err := config.Load(nil)
	if err != nil {
		return err
	}
	sb, err := NewScratch(ctx, cfg, "publicdigit_bench_api")
	if err != nil {
		return err
	}
	defer sb.Drop(context.WithoutCancel(ctx))

	slug := tenant.MustSlug("bench_api")
	tenantID, err := sb.Tenant(ctx, slug, modules.Elections)
	if err != nil {
		return err
	}
	members, err := sb.Members(ctx, slug, tenantID, *nMembers)
	if err != nil {
		return err
	}
	cardIDs, err := preIssue(ctx, sb, slug, tenantID)
	if err != nil {
		return err
	}
	ballots, err := openElections(ctx, sb, slug, tenantID, members, *nElections)
	if err != nil {
		return err
	}
	// The bare baseline queries the tenant's tables as the application role itself.
	if err := sb.GrantAppDirect(ctx, slug); err != nil {
		return err
	}

	// The whole stack, as the server binary runs it, on the scratch database.
	scfg := cfg
	scfg.Landlord.URL = sb.AppURL
	scfg.Landlord.ListenURL = sb.DirectAppURL
	scfg.Admin.URL = sb.AdminURL
	scfg.Clusters = map[string]config.Cluster{"main": {URL: sb.AppURL, AdminURL: sb.AdminURL, PgBouncer: cfg.Clusters[cfg.DefaultCluster].PgBouncer}}
	scfg.DefaultCluster = "main"
	scfg.HTTP.Addr = "127.0.0.1:0"
	scfg.Tenant.WarmPool = 0
	// One tenant takes all the load here: its concurrency cap (a policy
	// against noisy neighbours, 8 by default) would queue the stack's
	// requests while the bare handler runs them all. The limiter still
	// admits every request, so its cost is measured.
	scfg.Tenant.MaxConcurrentRequests = max(scfg.Tenant.MaxConcurrentRequests, *conc)
	scfg.HTTP.CursorSecret = strings.Repeat("bench-api-cursor-secret!", 2)
	// Log lines are formatted as in production, then discarded.
	logger := zerolog.New(io.Discard).Level(zerolog.InfoLevel)
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	addrCh, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- server.Run(srvCtx, scfg, logger, server.Options{OnListen: func(a string) { addrCh <- a }})
	}()
	var stackAddr string
	select {
	case stackAddr = <-addrCh:
	case err := <-done:
		stopSrv()
		return fmt.Errorf("whole-stack server: %w", err)
	}
	defer func() {
		stopSrv()
		<-done
	}()

	ta, err := app.Open(ctx, scfg, zerolog.Nop(), app.Options{})
	if err != nil {
		return err
	}
	defer ta.Close()
	token, _, err := ta.Tokens.Create(ctx, access.CreateRequest{
		Name: "bench-api", Kind: access.KindTenant, Tenant: slug})
	if err != nil {
		return err
	}

	// The bare handler: same statements, schema-qualified, no binding.
	pool, err := barePool(ctx, sb.AppURL, app.PoolConfig(cfg.Pool), mode)
	if err != nil {
		return err
	}
	defer pool.Close()
	bareAddr, stopBare, err := serveBare(pool, slug, tenantID, cfg.HTTP.BodyLimit)
	if err != nil {
		return err
	}
	defer stopBare()

	stackClient := newAPIClient(stackAddr, *conc, "Bearer "+token)
	bareClient := newAPIClient(bareAddr, *conc, "")
	prefix := "/" + slug.String() + "/api/v1"
	cases := []apiCase{
		{"get-stack", stackClient.get(prefix + "/cards/")},
		{"get-bare", bareClient.get("/bare/cards/")},
		{"issue-stack", stackClient.issue(prefix + "/cards")},
		{"issue-bare", bareClient.issue("/bare/cards")},
		{"vote-stack", stackClient.vote(ballots, func(e uuid.UUID) string { return prefix + "/elections/" + e.String() + "/ballots" })},
		{"vote-bare", bareClient.vote(ballots, func(e uuid.UUID) string { return "/bare/elections/" + e.String() + "/ballots" })},
	}
	idsOf := func(name string) []uuid.UUID {
		if strings.HasPrefix(name, "get") {
			return cardIDs
		}
		return members // vote cases take their (election, member) pairs from ballots
	}
	// Warm both paths (connections, placement cache, token cache).
	for _, c := range cases {
		if _, _, _, err := measureAll(ctx, c.run, idsOf(c.name), *conc, 300*time.Millisecond, ""); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	if *only != "" {
		return profileAPICase(ctx, cases, *only, *profile, idsOf(*only), *conc, *dur, sb.Name, out)
	}

	fmt.Fprintf(out, "# api benchmark: c=%d, %s × %d rounds per case (median); bare pool mode %s; %d members, %d cards at start; client, servers, PgBouncer and PostgreSQL share the machine\n",
		*conc, *dur, *rounds, *bareMode, len(members), len(cardIDs))
	qps, cpu, srv := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for round := 0; round < *rounds; round++ {
		for pair := 0; pair < len(cases)/2; pair++ {
			order := cases[2*pair : 2*pair+2]
			if round%2 == 1 { // alternate the order against drift
				order = []apiCase{order[1], order[0]}
			}
			for _, c := range order {
				n, client, server, err := measureAll(ctx, c.run, idsOf(c.name), *conc, *dur, sb.Name)
				if err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				qps[c.name] = append(qps[c.name], n)
				cpu[c.name] = append(cpu[c.name], float64(client.Nanoseconds())/1e3)
				srv[c.name] = append(srv[c.name], float64(server.Nanoseconds())/1e3)
			}
		}
	}
	med := func(m map[string][]float64, k string) float64 { return median(m[k]) }
	// Each round runs a case's two sides back to back, so they share the
	// machine's load of the moment: the ratio is taken per round, and its
	// median reported (a burst of other work then spoils one round, not the
	// figure).
	ratios := func(op string, of func(k string, i int) float64) []float64 {
		var rs []float64
		for i := range qps[op+"-bare"] {
			rs = append(rs, of(op+"-bare", i)/of(op+"-stack", i))
		}
		return rs
	}
	throughput := func(k string, i int) float64 { return qps[k][i] }
	cpuPerRequest := func(k string, i int) float64 { return cpu[k][i] + srv[k][i] }
	for _, op := range []string{"get", "issue", "vote"} {
		fmt.Fprintf(out, "api_overhead %s %.3f\n", op, median(ratios(op, throughput)))
	}
	for _, op := range []string{"get", "issue", "vote"} {
		fmt.Fprintf(out, "api_cpu_overhead %s %.3f\n", op, 1/median(ratios(op, cpuPerRequest)))
	}
	fmt.Fprintln(out, "\n# api_overhead per round (bare/stack req/s, rounds in order), and the ratio of the cases' median throughputs")
	for _, op := range []string{"get", "issue", "vote"} {
		var rs []string
		for _, r := range ratios(op, throughput) {
			rs = append(rs, fmt.Sprintf("%.3f", r))
		}
		fmt.Fprintf(out, "# %s: %s; medians %.3f\n", op, strings.Join(rs, " "), med(qps, op+"-bare")/med(qps, op+"-stack"))
	}
	fmt.Fprintf(out, "# ballots cast: %d of %d possible\n", ballots.used(), ballots.capacity())
	fmt.Fprintln(out, "\n# requests/s (median of rounds, min–max); CPU µs per request: this process (client + HTTP servers + pgx) + database (PostgreSQL backends + PgBouncer)")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "case\treq/s\trange\tprocess µs\tdatabase µs\ttotal µs")
	for _, c := range cases {
		lo, hi := minMax(qps[c.name])
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f–%.0f\t%.0f\t%.0f\t%.0f\n", c.name, med(qps, c.name), lo, hi,
			med(cpu, c.name), med(srv, c.name), med(cpu, c.name)+med(srv, c.name))
	}
	return tw.Flush()
}

func minMax(xs []float64) (float64, float64) {
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

// preIssue inserts one issued card per member and returns the card ids.
func preIssue(ctx context.Context, sb *Scratch, slug tenant.Slug, tenantID uuid.UUID) ([]uuid.UUID, error) {
	schema := pgx.Identifier{slug.SchemaName()}.Sanitize()
	rows, err := sb.Admin.QueryContext(ctx, `INSERT INTO `+schema+`.digital_cards (tenant_id, member_id, qr_code, status, expires_at)
		SELECT $1, id, 'PD1-PRE' || md5(id::text), 'issued', now() + interval '1 year' FROM `+schema+`.members RETURNING id`, tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_, err = sb.Admin.ExecContext(ctx, `ANALYZE `+schema+`.digital_cards`)
	return ids, err
}

// barePool opens a plain pool with the settings of the tenant pools (size,
// lifetimes, no statement cache, application_name) in the given exec mode.
func barePool(ctx context.Context, url string, p pgroute.PoolConfig, mode pgx.QueryExecMode) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	pc.MaxConns, pc.MinConns = p.MaxConns, p.MinConns
	pc.MaxConnLifetime, pc.MaxConnIdleTime, pc.HealthCheckPeriod = p.MaxConnLifetime, p.MaxConnIdleTime, p.HealthCheckPeriod
	pc.ShouldPing = func(_ context.Context, sp pgxpool.ShouldPingParams) bool { return sp.IdleDuration > time.Minute }
	pc.ConnConfig.DefaultQueryExecMode = mode
	pc.ConnConfig.StatementCacheCapacity = 0
	pc.ConnConfig.DescriptionCacheCapacity = 0
	pc.ConnConfig.RuntimeParams["application_name"] = p.ApplicationName + "-bare"
	return pgxpool.NewWithConfig(ctx, pc)
}

const cardColumns = `id, tenant_id, member_id, qr_code, status, issued_at, activated_at, revoked_at, expires_at, created_at, updated_at`

// serveBare serves GET /bare/cards/:id, POST /bare/cards and POST
// /bare/elections/:id/ballots with the statements of cards.Service.Get,
// cards.Service.Issue and elections.Service.Vote, schema-qualified, on pool:
// no auth, no tenant resolution, no module check, no binding, no middleware.
func serveBare(pool *pgxpool.Pool, slug tenant.Slug, tenantID uuid.UUID, bodyLimit int) (string, func(), error) {
	cardsTable := pgx.Identifier{slug.SchemaName(), "digital_cards"}.Sanitize()
	membersTable := pgx.Identifier{slug.SchemaName(), "members"}.Sanitize()
	actsTable := pgx.Identifier{slug.SchemaName(), "card_activities"}.Sanitize()
	getSQL := `SELECT ` + cardColumns + ` FROM ` + cardsTable + ` WHERE tenant_id = $1 AND id = $2`
	issueSQL := `WITH m AS (
			SELECT id, status FROM ` + membersTable + ` WHERE tenant_id = $1 AND id = $2
		), card AS (
			INSERT INTO ` + cardsTable + ` (id, tenant_id, member_id, qr_code, status, expires_at)
			SELECT $3, $1, m.id, $4, 'issued', $5 FROM m WHERE m.status = 'active'
			RETURNING ` + cardColumns + `
		), act AS (
			INSERT INTO ` + actsTable + ` (id, tenant_id, card_id, action, actor)
			SELECT $6, $1, card.id, 'issued', $7 FROM card
		)
		SELECT m.status, card.* FROM m LEFT JOIN card ON true`

	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: bodyLimit})
	app.Get("/bare/cards/:id", func(c *fiber.Ctx) error {
		id, err := uuid.Parse(c.Params("id"))
		if err != nil {
			return c.SendStatus(fiber.StatusBadRequest)
		}
		var card cards.Card
		if err := scanCard(pool.QueryRow(c.UserContext(), getSQL, tenantID, id), &card); err != nil {
			return err
		}
		return c.JSON(card)
	})
	app.Post("/bare/cards", func(c *fiber.Ctx) error {
		var body struct {
			MemberID uuid.UUID `json:"member_id"`
		}
		if err := json.Unmarshal(c.Body(), &body); err != nil {
			return c.SendStatus(fiber.StatusBadRequest)
		}
		qr, err := cards.NewQRCode()
		if err != nil {
			return err
		}
		cardID, actID := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
		var card cards.Card
		var memberStatus string
		err = pool.QueryRow(c.UserContext(), issueSQL, tenantID, body.MemberID, cardID, qr,
			time.Now().Add(cards.DefaultValidity), actID, "bench").Scan(&memberStatus, &card.ID, &card.TenantID,
			&card.MemberID, &card.QRCode, &card.Status, &card.IssuedAt, &card.ActivatedAt, &card.RevokedAt,
			&card.ExpiresAt, &card.CreatedAt, &card.UpdatedAt) // every bench member is active: a card comes back
		if err != nil {
			return err
		}
		return c.Status(fiber.StatusCreated).JSON(card)
	})
	voteSQL := qualify(elections.VoteSQL, slug.SchemaName())
	app.Post("/bare/elections/:id/ballots", func(c *fiber.Ctx) error {
		id, err := uuid.Parse(c.Params("id"))
		if err != nil {
			return c.SendStatus(fiber.StatusBadRequest)
		}
		var b struct {
			MemberID uuid.UUID `json:"member_id"`
			Choices  []struct {
				PositionID   uuid.UUID   `json:"position_id"`
				CandidateIDs []uuid.UUID `json:"candidate_ids"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(c.Body(), &b); err != nil {
			return c.SendStatus(fiber.StatusBadRequest)
		}
		var positions, candidates []string
		for _, ch := range b.Choices {
			for _, cand := range ch.CandidateIDs {
				positions, candidates = append(positions, ch.PositionID.String()), append(candidates, cand.String())
			}
		}
		var status, memberStatus *string
		var inWindow, card, scope, valid *bool
		var counted bool
		if err := pool.QueryRow(c.UserContext(), voteSQL, tenantID, id, b.MemberID, positions, candidates,
			uuid.Must(uuid.NewV7()), "bench").Scan(&status, &inWindow, &memberStatus, &card, &scope, &valid, &counted); err != nil {
			return err
		}
		if !counted {
			return c.SendStatus(fiber.StatusConflict)
		}
		return c.Status(fiber.StatusCreated).JSON(elections.Receipt{ElectionID: id, MemberID: b.MemberID, Counted: true})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = app.Listener(ln) }()
	return ln.Addr().String(), func() { _ = app.ShutdownWithTimeout(5 * time.Second) }, nil
}

func scanCard(row pgx.Row, c *cards.Card) error {
	return row.Scan(&c.ID, &c.TenantID, &c.MemberID, &c.QRCode, &c.Status, &c.IssuedAt,
		&c.ActivatedAt, &c.RevokedAt, &c.ExpiresAt, &c.CreatedAt, &c.UpdatedAt)
}

// apiClient is a keep-alive HTTP client with a connection per worker.
type apiClient struct {
	hc   *fasthttp.HostClient
	auth string
}

func newAPIClient(addr string, conc int, auth string) *apiClient {
	return &apiClient{hc: &fasthttp.HostClient{Addr: addr, MaxConns: 2 * conc, MaxIdleConnDuration: time.Minute,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}, auth: auth}
}

var errStatus = errors.New("unexpected status")

// errUnavailable marks a 503 answer (a timeout, the database unavailable):
// the scale benchmark counts those instead of stopping.
var errUnavailable = errors.New("service unavailable")

func (ac *apiClient) do(method, uri string, body []byte, want int) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost(ac.hc.Addr)
	if ac.auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, ac.auth)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if err := ac.hc.Do(req, resp); err != nil {
		return err
	}
	if resp.StatusCode() == fasthttp.StatusServiceUnavailable && want != fasthttp.StatusServiceUnavailable {
		return fmt.Errorf("%w (%w) %s %s: %s", errStatus, errUnavailable, method, uri, resp.Body())
	}
	if resp.StatusCode() != want {
		return fmt.Errorf("%w %s %s: %d %s", errStatus, method, uri, resp.StatusCode(), resp.Body())
	}
	return nil
}

// get requests prefix + id, expecting 200.
func (ac *apiClient) get(prefix string) func(context.Context, uuid.UUID) error {
	return func(_ context.Context, id uuid.UUID) error {
		return ac.do(fasthttp.MethodGet, prefix+id.String(), nil, fasthttp.StatusOK)
	}
}

// issue posts {"member_id": id} to path, expecting 201.
func (ac *apiClient) issue(path string) func(context.Context, uuid.UUID) error {
	return func(_ context.Context, id uuid.UUID) error {
		return ac.do(fasthttp.MethodPost, path, []byte(`{"member_id":"`+id.String()+`"}`), fasthttp.StatusCreated)
	}
}

// profileAPICase runs one case, optionally under the CPU profiler.
func profileAPICase(ctx context.Context, cases []apiCase, name, profile string, ids []uuid.UUID, conc int, d time.Duration, db string, out io.Writer) error {
	for _, c := range cases {
		if c.name != name {
			continue
		}
		if profile != "" {
			f, err := os.Create(profile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		backends0 := backendCPU(db)
		qps, cpu, srv, err := measureAll(ctx, c.run, ids, conc, d, db)
		if err != nil {
			return err
		}
		backends := (backendCPU(db) - backends0) / time.Duration(qps*d.Seconds())
		fmt.Fprintf(out, "%s c=%d: %.0f/s; CPU per request: process %s, PostgreSQL backends %s, PgBouncer %s\n",
			name, conc, qps, cpu, backends, srv-backends)
		return nil
	}
	return fmt.Errorf("no case %q", name)
}

// qualify schema-qualifies the tables of the elections' and cards' SQL
// (after FROM, JOIN and INTO), for the bare handler.
func qualify(sql, schema string) string {
	tables := `elections|members|digital_cards|election_scope_units|election_candidates|election_positions|` +
		`election_voters|election_ballots|election_activities`
	re := regexp.MustCompile(`\b(FROM|JOIN|INTO)\s+(` + tables + `)\b`)
	return re.ReplaceAllString(sql, "$1 "+pgx.Identifier{schema}.Sanitize()+".$2")
}

// ballotPairs hands out (election, member) pairs, each once: every ballot
// of the benchmark is a member's first in that election, on both paths.
type ballotPairs struct {
	elections []benchElection
	members   []uuid.UUID
	next      atomic.Int64
}

type benchElection struct {
	id, position uuid.UUID
	candidates   []uuid.UUID
}

func (b *ballotPairs) capacity() int { return len(b.elections) * len(b.members) }

func (b *ballotPairs) used() int { return int(min(b.next.Load(), int64(b.capacity()))) }

// take returns the next pair's election and the ballot's body.
func (b *ballotPairs) take() (uuid.UUID, []byte, error) {
	k := int(b.next.Add(1) - 1)
	if k >= b.capacity() {
		return uuid.Nil, nil, fmt.Errorf("all %d ballots are cast: raise -elections", b.capacity())
	}
	e, m := b.elections[k/len(b.members)], b.members[k%len(b.members)]
	body := `{"member_id":"` + m.String() + `","choices":[{"position_id":"` + e.position.String() +
		`","candidate_ids":["` + e.candidates[k%len(e.candidates)].String() + `"]}]}`
	return e.id, []byte(body), nil
}

// vote casts the next ballot at path(election), expecting 201.
func (ac *apiClient) vote(b *ballotPairs, path func(uuid.UUID) string) func(context.Context, uuid.UUID) error {
	return func(context.Context, uuid.UUID) error {
		e, body, err := b.take()
		if err != nil {
			return err
		}
		return ac.do(fasthttp.MethodPost, path(e), body, fasthttp.StatusCreated)
	}
}

// openElections activates every member's card and makes n open elections,
// each with one position (1 seat) and three candidates, directly in the
// bench tenant's schema.
func openElections(ctx context.Context, sb *Scratch, slug tenant.Slug, tenantID uuid.UUID, members []uuid.UUID, n int) (*ballotPairs, error) {
	s := pgx.Identifier{slug.SchemaName()}.Sanitize()
	if _, err := sb.Admin.ExecContext(ctx, `UPDATE `+s+`.digital_cards SET status = 'active', activated_at = now()`); err != nil {
		return nil, err
	}
	b := &ballotPairs{members: members}
	for i := 0; i < n; i++ {
		e := benchElection{id: uuid.Must(uuid.NewV7()), position: uuid.Must(uuid.NewV7())}
		if _, err := sb.Admin.ExecContext(ctx, `INSERT INTO `+s+`.elections (id, tenant_id, title, status, opens_at, closes_at, opened_at)
			VALUES ($1, $2, $3, 'open', now() - interval '1 hour', now() + interval '1 day', now())`, e.id, tenantID, fmt.Sprintf("Bench %d", i)); err != nil {
			return nil, err
		}
		if _, err := sb.Admin.ExecContext(ctx, `INSERT INTO `+s+`.election_positions (id, tenant_id, election_id, title, seats)
			VALUES ($1, $2, $3, 'Chair', 1)`, e.position, tenantID, e.id); err != nil {
			return nil, err
		}
		for _, m := range members[:3] {
			c := uuid.Must(uuid.NewV7())
			if _, err := sb.Admin.ExecContext(ctx, `INSERT INTO `+s+`.election_candidates (id, tenant_id, election_id, position_id, member_id)
				VALUES ($1, $2, $3, $4, $5)`, c, tenantID, e.id, e.position, m); err != nil {
				return nil, err
			}
			e.candidates = append(e.candidates, c)
		}
		b.elections = append(b.elections, e)
	}
	for _, t := range []string{"elections", "election_positions", "election_candidates", "digital_cards"} {
		if _, err := sb.Admin.ExecContext(ctx, `ANALYZE `+s+`.`+pgx.Identifier{t}.Sanitize()); err != nil {
			return nil, err
		}
	}
	return b, nil
}
