package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tenantRef is one tenant of a run, as the API created it.
type tenantRef struct {
	slug   string
	id     string
	schema string
	token  string // a tenant token of its own
}

// domain ends the email of every member the run writes for the tenant, so
// that a row seen anywhere names the tenant it belongs to.
func (t tenantRef) domain() string { return "@" + strings.ReplaceAll(t.slug, "_", "-") + ".chaos.test" }

func (t tenantRef) path(rest string) string { return "/" + t.slug + "/api/v1" + rest }

// tally counts what the clients saw.
type tally struct {
	requests  atomic.Int64 // answered or not
	acked     atomic.Int64 // writes acknowledged (members and cards)
	retryable atomic.Int64 // 503 (or 429) with Retry-After
	down      atomic.Int64 // no answer while the server was down on purpose
	bad       atomic.Int64 // any other failure: a 500, a 503 without Retry-After, no answer while up
	hung      atomic.Int64 // no answer within the client's deadline
	leaks     atomic.Int64 // another tenant's data, or an acknowledged row missing on read

	mu      sync.Mutex
	samples []string // the first bad answers, for the report
}

func (t *tally) sample(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < 20 {
		t.samples = append(t.samples, fmt.Sprintf(format, args...))
	}
}

// ledger holds every acknowledged write, to check afterwards that each is
// present exactly once.
type ledger struct {
	mu      sync.Mutex
	members map[string]map[string]string // slug → email → id ("" when acknowledged by a 409)
	ids     map[string][]string          // slug → acknowledged member ids (for reads)
	cards   map[string][]string          // slug → acknowledged card ids
}

func newLedger() *ledger {
	return &ledger{members: map[string]map[string]string{}, ids: map[string][]string{}, cards: map[string][]string{}}
}

func (l *ledger) ackMember(slug, email, id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.members[slug]
	if m == nil {
		m = map[string]string{}
		l.members[slug] = m
	}
	if _, dup := m[email]; dup {
		return false
	}
	m[email] = id
	if id != "" {
		l.ids[slug] = append(l.ids[slug], id)
	}
	return true
}

func (l *ledger) ackCard(slug, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cards[slug] = append(l.cards[slug], id)
}

// someMember returns an acknowledged member id of the tenant, if any.
func (l *ledger) someMember(slug string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := l.ids[slug]
	if len(ids) == 0 {
		return "", false
	}
	return ids[rand.IntN(len(ids))], true
}

// downWindows records when the server was down on purpose: a request
// without an answer that overlaps one is expected.
type downWindows struct {
	mu      sync.Mutex
	windows [][2]time.Time // the last one's end is zero while open
}

func (d *downWindows) open() {
	d.mu.Lock()
	d.windows = append(d.windows, [2]time.Time{time.Now()})
	d.mu.Unlock()
}

func (d *downWindows) close() {
	d.mu.Lock()
	if n := len(d.windows); n > 0 && d.windows[n-1][1].IsZero() {
		d.windows[n-1][1] = time.Now()
	}
	d.mu.Unlock()
}

func (d *downWindows) overlaps(from, to time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.windows {
		if !from.After(orNow(w[1])) && !to.Before(w[0]) {
			return true
		}
	}
	return false
}

func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// client sends the workload's requests and classifies their answers.
type client struct {
	base     string
	http     *http.Client
	tally    *tally
	down     *downWindows
	platform string // the platform token
}

// answer is one request's result.
type answer struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
	err          error
	start, end   time.Time
}

// problem is the code of a problem+json answer.
func (a answer) code() string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(a.body, &p)
	return p.Code
}

func (c *client) do(ctx context.Context, method, path, token string, body any) answer {
	a := answer{method: method, path: path, start: time.Now()}
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		a.err = err
		return a
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.http.Do(req)
	if err == nil {
		a.body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		a.status, a.header = resp.StatusCode, resp.Header
	}
	a.err, a.end = err, time.Now()
	if ctx.Err() == nil {
		c.tally.requests.Add(1)
	}
	return a
}

// outcome is how a request ended.
type outcome int

const (
	answered   outcome = iota // an expected status
	retryLater                // 503 with Retry-After
	noAnswer                  // no answer, the server being down on purpose
	failed                    // anything else (counted, sampled)
	stopped                   // the run ended meanwhile (not counted)
)

// classify counts an answer: expected statuses are fine; a 503 must carry
// Retry-After; no answer is fine only while the server is down on purpose.
func (c *client) classify(ctx context.Context, a answer, expected ...int) outcome {
	if ctx.Err() != nil {
		return stopped
	}
	if a.err != nil {
		var ne net.Error
		switch {
		case errors.As(a.err, &ne) && ne.Timeout():
			c.tally.hung.Add(1)
			c.tally.sample("%s %s: no answer within %s", a.method, a.path, a.end.Sub(a.start).Round(time.Millisecond))
			return failed
		case c.down.overlaps(a.start, a.end):
			c.tally.down.Add(1)
			return noAnswer
		}
		c.tally.bad.Add(1)
		c.tally.sample("%s %s: %v", a.method, a.path, a.err)
		return failed
	}
	for _, s := range expected {
		if a.status == s {
			return answered
		}
	}
	// 503, or 429 from the tenant's own concurrency limit: both say when to retry.
	if (a.status == http.StatusServiceUnavailable || a.status == http.StatusTooManyRequests) && a.header.Get("Retry-After") != "" {
		c.tally.retryable.Add(1)
		return retryLater
	}
	c.tally.bad.Add(1)
	c.tally.sample("%s %s: %d %s", a.method, a.path, a.status, truncate(string(a.body), 300))
	return failed
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// backoff waits a little before a retry (Retry-After says 1 s; the run
// retries sooner, with jitter, to keep the pressure on).
func backoff(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(100*time.Millisecond + rand.N(200*time.Millisecond)):
	}
}

// writer creates members with unique emails, and cards for some of them.
type writer struct {
	id      int
	c       *client
	tenants []tenantRef
	ledger  *ledger
	pace    time.Duration
}

func (w *writer) run(ctx context.Context) {
	for seq := 0; ctx.Err() == nil; seq++ {
		t := w.tenants[rand.IntN(len(w.tenants))]
		token := t.token
		if seq%2 == 1 {
			token = w.c.platform
		}
		email := fmt.Sprintf("w%d-%d%s", w.id, seq, t.domain())
		if id, ok := w.createMember(ctx, t, token, email); ok && id != "" && seq%3 == 0 {
			w.issueCard(ctx, t, token, id)
		}
		pause(ctx, w.pace)
	}
}

// createMember retries until the member is acknowledged: a 201, or a 409
// email_taken after an attempt whose answer said nothing certain (a 503 or
// no answer: that attempt committed).
func (w *writer) createMember(ctx context.Context, t tenantRef, token, email string) (string, bool) {
	body := map[string]any{"full_name": "Chaos member", "email": email}
	for attempt := 0; attempt < 50 && ctx.Err() == nil; attempt++ {
		a := w.c.do(ctx, http.MethodPost, t.path("/members"), token, body)
		if attempt > 0 && a.status == http.StatusConflict && a.code() == "email_taken" {
			if w.ledger.ackMember(t.slug, email, "") {
				w.c.tally.acked.Add(1)
			}
			return "", true
		}
		switch w.c.classify(ctx, a, http.StatusCreated) {
		case answered:
			var m struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(a.body, &m); err != nil || m.ID == "" {
				w.c.tally.bad.Add(1)
				w.c.tally.sample("POST %s: 201 without an id: %s", a.path, truncate(string(a.body), 200))
				return "", false
			}
			if w.ledger.ackMember(t.slug, email, m.ID) {
				w.c.tally.acked.Add(1)
			}
			return m.ID, true
		case retryLater, noAnswer:
			backoff(ctx)
		case failed:
			if a.err == nil && a.status < 500 {
				return "", false // a refusal: retrying would not help
			}
			backoff(ctx)
		case stopped:
			return "", false
		}
	}
	return "", false
}

// issueCard issues a card for a member: acknowledged by a 201. A retry
// after an uncertain answer may issue a second card; only acknowledged
// ones are checked.
func (w *writer) issueCard(ctx context.Context, t tenantRef, token, memberID string) {
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		a := w.c.do(ctx, http.MethodPost, t.path("/cards"), token, map[string]any{"member_id": memberID})
		switch w.c.classify(ctx, a, http.StatusCreated) {
		case answered:
			var card struct {
				ID       string `json:"id"`
				TenantID string `json:"tenant_id"`
			}
			if err := json.Unmarshal(a.body, &card); err != nil || card.ID == "" {
				w.c.tally.bad.Add(1)
				return
			}
			if card.TenantID != t.id {
				w.c.tally.leaks.Add(1)
				w.c.tally.sample("POST %s: a card of tenant %s", a.path, card.TenantID)
			}
			w.ledger.ackCard(t.slug, card.ID)
			w.c.tally.acked.Add(1)
			return
		case retryLater, noAnswer:
			backoff(ctx)
		default:
			return
		}
	}
}

// reader reads members and cards and checks that every row it sees is
// the tenant's own, and that acknowledged members are found.
type reader struct {
	c       *client
	tenants []tenantRef
	ledger  *ledger
	pace    time.Duration
	cursors map[string]string // slug → next page of members
}

func (r *reader) run(ctx context.Context) {
	r.cursors = map[string]string{}
	for i := 0; ctx.Err() == nil; i++ {
		t := r.tenants[rand.IntN(len(r.tenants))]
		token := t.token
		if i%2 == 1 {
			token = r.c.platform
		}
		switch i % 4 {
		case 0:
			r.listMembers(ctx, t, token)
		case 1:
			r.getMember(ctx, t, token)
		case 2:
			r.listCards(ctx, t, token)
		case 3:
			r.otherTenant(ctx, t)
		}
		pause(ctx, r.pace)
	}
}

type memberRow struct {
	ID       string  `json:"id"`
	TenantID string  `json:"tenant_id"`
	Email    *string `json:"email"`
}

// own reports whether a member row read for t is t's.
func own(t tenantRef, m memberRow) bool {
	return m.TenantID == t.id && (m.Email == nil || strings.HasSuffix(*m.Email, t.domain()))
}

func (r *reader) leak(a answer, format string, args ...any) {
	r.c.tally.leaks.Add(1)
	r.c.tally.sample("%s %s: "+format, append([]any{a.method, a.path}, args...)...)
}

func (r *reader) listMembers(ctx context.Context, t tenantRef, token string) {
	path := t.path("/members?limit=50")
	if after := r.cursors[t.slug]; after != "" {
		path += "&after=" + after
	}
	a := r.c.do(ctx, http.MethodGet, path, token, nil)
	if r.c.classify(ctx, a, http.StatusOK) != answered {
		return
	}
	var page struct {
		Items []memberRow `json:"items"`
		Next  *string     `json:"next"`
	}
	if err := json.Unmarshal(a.body, &page); err != nil {
		r.c.tally.bad.Add(1)
		return
	}
	for _, m := range page.Items {
		if !own(t, m) {
			r.leak(a, "row %s of tenant %s", m.ID, m.TenantID)
		}
	}
	if page.Next != nil {
		r.cursors[t.slug] = *page.Next
	} else {
		delete(r.cursors, t.slug)
	}
}

func (r *reader) getMember(ctx context.Context, t tenantRef, token string) {
	id, ok := r.ledger.someMember(t.slug)
	if !ok {
		return
	}
	a := r.c.do(ctx, http.MethodGet, t.path("/members/"+id), token, nil)
	if a.status == http.StatusNotFound {
		r.leak(a, "an acknowledged member is not found")
		return
	}
	if r.c.classify(ctx, a, http.StatusOK) != answered {
		return
	}
	var m memberRow
	if err := json.Unmarshal(a.body, &m); err != nil || m.ID != id || !own(t, m) {
		r.leak(a, "another row: %s", truncate(string(a.body), 200))
	}
}

func (r *reader) listCards(ctx context.Context, t tenantRef, token string) {
	a := r.c.do(ctx, http.MethodGet, t.path("/cards?limit=20"), token, nil)
	if r.c.classify(ctx, a, http.StatusOK) != answered {
		return
	}
	var page struct {
		Items []struct {
			ID       string `json:"id"`
			TenantID string `json:"tenant_id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(a.body, &page); err != nil {
		r.c.tally.bad.Add(1)
		return
	}
	for _, c := range page.Items {
		if c.TenantID != t.id {
			r.leak(a, "card %s of tenant %s", c.ID, c.TenantID)
		}
	}
}

// otherTenant uses t's own token on another tenant: always the answer of a
// tenant that does not exist.
func (r *reader) otherTenant(ctx context.Context, t tenantRef) {
	other := r.tenants[rand.IntN(len(r.tenants))]
	if other.slug == t.slug {
		return
	}
	a := r.c.do(ctx, http.MethodGet, other.path("/members?limit=5"), t.token, nil)
	if a.status == http.StatusOK {
		r.leak(a, "tenant %s's token read tenant %s", t.slug, other.slug)
		return
	}
	r.c.classify(ctx, a, http.StatusNotFound)
}

func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
