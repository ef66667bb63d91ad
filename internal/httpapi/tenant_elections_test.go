package httpapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/modules"
)

// electionIDs are the ids of a draft election with one position and one candidate.
type electionIDs struct {
	election, position, candidate string
}

// draftElection creates, with the platform token (the tenant's admin), a
// draft with the position "Chair" (1 seat) and the member as its candidate.
func (ta *tenantAPI) draftElection(t *testing.T, tt testTenant, member string) electionIDs {
	t.Helper()
	e := ta.call(t, "POST", tt.path("/elections"), ta.platform, map[string]any{
		"title": "Board", "opens_at": time.Now().Add(-time.Minute), "closes_at": time.Now().Add(time.Hour)}).ok(t, 201)
	id := e["id"].(string)
	p := ta.call(t, "POST", tt.pathf("/elections/%s/positions", id), ta.platform, map[string]any{"title": "Chair", "seats": 1}).ok(t, 201)
	c := ta.call(t, "POST", tt.pathf("/elections/%s/positions/%s/candidates", id, p["id"]), ta.platform,
		map[string]any{"member_id": member}).ok(t, 201)
	return electionIDs{election: id, position: p["id"].(string), candidate: c["id"].(string)}
}

// voter creates an active member holding an active card.
func (ta *tenantAPI) voter(t *testing.T, tt testTenant, name string) string {
	t.Helper()
	m := ta.member(t, tt, map[string]any{"full_name": name})
	card := ta.card(t, tt, m)
	ta.call(t, "POST", tt.pathf("/cards/%s/activate", card["id"]), tt.token, nil).ok(t, 200)
	return m
}

func ballot(member, position string, candidates ...string) map[string]any {
	return map[string]any{"member_id": member,
		"choices": []any{map[string]any{"position_id": position, "candidate_ids": candidates}}}
}

// The whole life of an election over HTTP: the admin (platform token)
// builds a draft that the tenant's token cannot see or change, opens it;
// the tenant's token casts ballots that count once; closing gives the admin
// the results, publishing gives them to everyone; the log has every step.
func TestTenantAPIElectionLifecycle(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	a := ta.tenant(t, "telife", modules.Elections)
	var voters []string
	for _, n := range []string{"Asha", "Bikash", "Chandra", "Dipa"} {
		voters = append(voters, ta.voter(t, a, n))
	}

	r := ta.call(t, "POST", a.path("/elections"), ta.platform, map[string]any{"title": "Executive committee 2026",
		"description": "Annual general meeting", "opens_at": time.Now().Add(-time.Minute), "closes_at": time.Now().Add(time.Hour)})
	e := r.ok(t, 201)
	id := e["id"].(string)
	assert.Equal(t, a.pathf("/elections/%s", id), r.header.Get("Location"))
	assert.Equal(t, "draft", e["status"])
	ta.call(t, "POST", a.path("/elections"), a.token, map[string]any{"title": "x"}).problem(t, 403, "forbidden")
	ta.call(t, "GET", a.pathf("/elections/%s", id), a.token, nil).problem(t, 404, "election_not_found")
	assert.Empty(t, ta.call(t, "GET", a.path("/elections"), a.token, nil).ok(t, 200)["items"], "drafts are the admins'")
	assert.Len(t, ta.call(t, "GET", a.path("/elections?status=draft"), ta.platform, nil).ok(t, 200)["items"], 1)

	pres := ta.call(t, "POST", a.pathf("/elections/%s/positions", id), ta.platform, map[string]any{"title": "President", "seats": 1}).ok(t, 201)
	comm := ta.call(t, "POST", a.pathf("/elections/%s/positions", id), ta.platform, map[string]any{"title": "Committee", "seats": 2}).ok(t, 201)
	cand := func(pos map[string]any, member string) string {
		return ta.call(t, "POST", a.pathf("/elections/%s/positions/%s/candidates", id, pos["id"]), ta.platform,
			map[string]any{"member_id": member}).ok(t, 201)["id"].(string)
	}
	asha, bikash := cand(pres, voters[0]), cand(pres, voters[1])
	chandra, dipa := cand(comm, voters[2]), cand(comm, voters[3])
	ta.call(t, "POST", a.pathf("/elections/%s/positions/%s/candidates", id, pres["id"]), ta.platform,
		map[string]any{"member_id": voters[0]}).problem(t, 409, "candidate_exists")
	ta.call(t, "PATCH", a.pathf("/elections/%s", id), ta.platform, map[string]any{"description": "AGM 2026"}).ok(t, 200)
	ta.call(t, "POST", a.pathf("/elections/%s/close", id), ta.platform, nil).problem(t, 409, "illegal_election_transition")
	ta.call(t, "POST", a.pathf("/elections/%s/open", id), a.token, nil).problem(t, 403, "forbidden")

	opened := ta.call(t, "POST", a.pathf("/elections/%s/open", id), ta.platform, nil).ok(t, 200)
	assert.Equal(t, "open", opened["status"])
	ta.call(t, "PATCH", a.pathf("/elections/%s", id), ta.platform, map[string]any{"title": "Late"}).problem(t, 409, "election_locked")
	d := ta.call(t, "GET", a.pathf("/elections/%s", id), a.token, nil).ok(t, 200)
	require.Len(t, d["positions"], 2)

	vote := func(member string, choices ...any) resp {
		t.Helper()
		return ta.call(t, "POST", a.pathf("/elections/%s/ballots", id), a.token, map[string]any{"member_id": member, "choices": choices})
	}
	choice := func(pos map[string]any, cs ...string) any {
		return map[string]any{"position_id": pos["id"], "candidate_ids": cs}
	}
	receipt := vote(voters[0], choice(pres, asha), choice(comm, chandra, dipa)).ok(t, 201)
	assert.Equal(t, map[string]any{"election_id": id, "member_id": voters[0], "counted": true}, receipt)
	vote(voters[1], choice(pres, asha), choice(comm, chandra)).ok(t, 201)
	vote(voters[2], choice(pres, bikash)).ok(t, 201)
	vote(voters[0], choice(pres, bikash)).problem(t, 409, "already_voted")
	vote(voters[3], choice(pres, asha, bikash)).problem(t, 400, "invalid_ballot")
	vote(voters[3], choice(pres, chandra)).problem(t, 400, "invalid_ballot")
	ta.call(t, "GET", a.pathf("/elections/%s/results", id), ta.platform, nil).problem(t, 409, "results_not_available")

	closed := ta.call(t, "POST", a.pathf("/elections/%s/close", id), ta.platform, nil).ok(t, 200)
	assert.Equal(t, float64(3), closed["ballots"])
	vote(voters[3], choice(pres, asha)).problem(t, 409, "election_not_open")
	ta.call(t, "GET", a.pathf("/elections/%s/results", id), a.token, nil).problem(t, 403, "results_not_published")
	res := ta.call(t, "GET", a.pathf("/elections/%s/results", id), ta.platform, nil).ok(t, 200)
	assert.Equal(t, float64(3), res["ballots"])
	positions := res["positions"].([]any)
	p0, p1 := positions[0].(map[string]any), positions[1].(map[string]any)
	assert.Equal(t, "President", p0["title"])
	assert.Equal(t, []string{"Asha 2 elected", "Bikash 1"}, results(p0))
	assert.Equal(t, []string{"Chandra 2 elected", "Dipa 1 elected"}, results(p1))

	ta.call(t, "POST", a.pathf("/elections/%s/publish", id), ta.platform, nil).ok(t, 200)
	pub := ta.call(t, "GET", a.pathf("/elections/%s/results", id), a.token, nil).ok(t, 200)
	assert.Equal(t, res["positions"], pub["positions"])
	assert.Equal(t, "published", pub["status"])

	ta.call(t, "GET", a.pathf("/elections/%s/activities", id), a.token, nil).problem(t, 403, "forbidden")
	var actions []string
	next := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		path := a.pathf("/elections/%s/activities?limit=4", id)
		if next != "" {
			path += "&after=" + next
		}
		page := ta.call(t, "GET", path, ta.platform, nil).ok(t, 200)
		for _, it := range page["items"].([]any) {
			act := it.(map[string]any)
			actions = append(actions, act["action"].(string))
			if act["action"] == "ballot_cast" {
				assert.Equal(t, []string{"member_id"}, keys(act["detail"].(map[string]any)), "a ballot's entry names no choice")
				assert.True(t, strings.HasPrefix(act["actor"].(string), "tenant:"))
			}
		}
		if page["next"] == nil {
			break
		}
		next = page["next"].(string)
	}
	assert.Equal(t, []string{"created", "position_added", "position_added", "candidate_added", "candidate_added",
		"candidate_added", "candidate_added", "updated", "opened", "ballot_cast", "ballot_cast", "ballot_cast",
		"closed", "published"}, actions)
}

func results(p map[string]any) []string {
	var out []string
	for _, c := range p["candidates"].([]any) {
		m := c.(map[string]any)
		s := fmt.Sprintf("%s %v", m["full_name"], m["votes"])
		if m["elected"] == true {
			s += " elected"
		}
		if m["tied"] == true {
			s += " tied"
		}
		out = append(out, s)
	}
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// 200 voters over 20 tenants' elections, each sending its ballot twice at
// once: every voter gets exactly one 201 and one 409 already_voted; once
// closed, every tenant's tally holds exactly the ballots accepted in that
// tenant (as the clients counted them) and equals a recount of its stored
// ballots; no tenant holds a ballot of another.
func TestTenantAPIConcurrentVoters(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	const tenants, perTenant = 20, 10
	type tenantElection struct {
		tt         testTenant
		voters     []string
		id, pos    string
		candidates []string
	}
	tes := make([]*tenantElection, tenants)
	var wg sync.WaitGroup
	setup := make(chan struct{}, 4)
	for i := range tes {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			setup <- struct{}{}
			defer func() { <-setup }()
			te := &tenantElection{tt: ta.tenant(t, fmt.Sprintf("tvote%02d", i), modules.Elections)}
			for v := 0; v < perTenant; v++ {
				te.voters = append(te.voters, ta.voter(t, te.tt, fmt.Sprintf("Voter %d", v)))
			}
			ids := ta.draftElection(t, te.tt, te.voters[0])
			te.id, te.pos, te.candidates = ids.election, ids.position, []string{ids.candidate}
			for _, m := range te.voters[1:3] {
				c := ta.call(t, "POST", te.tt.pathf("/elections/%s/positions/%s/candidates", te.id, te.pos), ta.platform,
					map[string]any{"member_id": m}).ok(t, 201)
				te.candidates = append(te.candidates, c["id"].(string))
			}
			ta.call(t, "POST", te.tt.pathf("/elections/%s/open", te.id), ta.platform, nil).ok(t, 200)
			tes[i] = te
		}(i)
	}
	wg.Wait()
	require.False(t, t.Failed())

	// Every voter sends its ballot twice, concurrently, all 200 voters at once.
	var accepted, refused atomic.Int64
	expect := make([]map[string]int, tenants) // tenant → candidate → accepted votes
	var mu sync.Mutex
	start := make(chan struct{})
	for i, te := range tes {
		expect[i] = map[string]int{}
		for v, voter := range te.voters {
			cand := te.candidates[(i+v)%len(te.candidates)]
			for copyN := 0; copyN < 2; copyN++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r := ta.call(t, "POST", te.tt.pathf("/elections/%s/ballots", te.id), te.tt.token, ballot(voter, te.pos, cand))
					switch r.status {
					case 201:
						accepted.Add(1)
						mu.Lock()
						expect[i][cand]++
						mu.Unlock()
					case 409:
						refused.Add(1)
						r.problem(t, 409, "already_voted")
					default:
						t.Errorf("ballot: %d %s", r.status, r.body)
					}
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	assert.EqualValues(t, tenants*perTenant, accepted.Load(), "one ballot per voter counted")
	assert.EqualValues(t, tenants*perTenant, refused.Load(), "every second ballot refused")

	db := dbtest.AdminDB(t)
	for i, te := range tes {
		closed := ta.call(t, "POST", te.tt.pathf("/elections/%s/close", te.id), ta.platform, nil).ok(t, 200)
		assert.Equal(t, float64(perTenant), closed["ballots"], te.tt.Slug)
		res := ta.call(t, "GET", te.tt.pathf("/elections/%s/results", te.id), ta.platform, nil).ok(t, 200)
		got := map[string]int{}
		for _, c := range res["positions"].([]any)[0].(map[string]any)["candidates"].([]any) {
			m := c.(map[string]any)
			got[m["candidate_id"].(string)] = int(m["votes"].(float64))
		}
		want := map[string]int{}
		for _, c := range te.candidates {
			want[c] = expect[i][c]
		}
		assert.Equal(t, want, got, "%s: the tally holds exactly the accepted ballots", te.tt.Slug)
		// A recount straight from the stored ballots and the roll.
		recount := map[string]int{}
		rows, err := db.QueryContext(context.Background(), `SELECT c::text, count(*) FROM `+
			pgx.Identifier{te.tt.Schema, "election_ballots"}.Sanitize()+` b, unnest(b.choices) c GROUP BY 1`)
		require.NoError(t, err)
		for rows.Next() {
			var c string
			var n int
			require.NoError(t, rows.Scan(&c, &n))
			recount[c] = n
		}
		require.NoError(t, rows.Close())
		for c := range want {
			if _, ok := recount[c]; !ok {
				recount[c] = 0
			}
		}
		assert.Equal(t, want, recount, "%s: tally = recount", te.tt.Slug)
		var roll, ballots int
		require.NoError(t, db.QueryRowContext(context.Background(), `SELECT (SELECT count(*) FROM `+
			pgx.Identifier{te.tt.Schema, "election_voters"}.Sanitize()+`), (SELECT count(*) FROM `+
			pgx.Identifier{te.tt.Schema, "election_ballots"}.Sanitize()+`)`).Scan(&roll, &ballots))
		assert.Equal(t, perTenant, roll, te.tt.Slug)
		assert.Equal(t, perTenant, ballots, "%s: its own ballots, nobody else's", te.tt.Slug)
	}
}

// A tenant without a module gets 404 module_not_installed on every route
// of that module — with its own token and with the platform token — and the
// core routes as usual; installing makes them live at once, uninstalling
// takes them away.
func TestTenantAPIModuleNotInstalled(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	bare := ta.bareTenant(t, "tbare")
	cardsOnly := ta.tenant(t, "tcards")
	full := ta.tenant(t, "tfull", modules.Elections)
	fm := ta.voter(t, full, "Full")
	fc := ta.card(t, full, fm)
	fe := ta.draftElection(t, full, fm)
	f := fixture{member: fm, card: fc["id"].(string), qr: fc["qr_code"].(string),
		election: fe.election, position: fe.position, candidate: fe.candidate}

	for _, tt := range []testTenant{bare, cardsOnly} {
		for _, e := range tenantEndpoints(tt, f) {
			module := ""
			switch rest := strings.TrimPrefix(e.path, "/"+tt.Slug+"/api/v1"); {
			case strings.HasPrefix(rest, "/cards"):
				module = modules.DigitalCards
			case strings.HasPrefix(rest, "/elections"):
				module = modules.Elections
			}
			if module == "" || tt.Slug == cardsOnly.Slug && module == modules.DigitalCards {
				continue
			}
			for _, tok := range []string{tt.token, ta.platform} {
				p := ta.call(t, e.method, e.path, tok, e.body).problem(t, 404, "module_not_installed")
				assert.Equal(t, "the tenant has not installed the module "+module, p["detail"])
			}
		}
	}
	assert.Empty(t, counts(t, bare)["members"], "nothing written")
	ta.call(t, "GET", bare.path("/members"), bare.token, nil).ok(t, 200)

	// Installed: live at once; uninstalled: gone at once.
	inst := "/api/v1/platform/tenants/" + cardsOnly.Slug + "/modules"
	ta.call(t, "POST", inst, ta.platform, map[string]any{"module": "elections"}).ok(t, 201)
	ta.call(t, "GET", cardsOnly.path("/elections"), cardsOnly.token, nil).ok(t, 200)
	assert.Equal(t, 204, ta.call(t, "DELETE", inst+"/elections", ta.platform, nil).status)
	ta.call(t, "GET", cardsOnly.path("/elections"), cardsOnly.token, nil).problem(t, 404, "module_not_installed")
}

// Modules installed and uninstalled while requests run, on two servers —
// the one that changes the module and another that only hears the change
// notice: every answer is the module's (200/201) or 404
// module_not_installed, never a 5xx; after each install the other server
// serves the module within moments, after each uninstall it stops.
func TestTenantAPIModulesUnderConcurrentInstall(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{})
	other := ta.secondServer(t)
	a := ta.tenant(t, "tinst")
	inst := "/api/v1/platform/tenants/" + a.Slug + "/modules"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var served, notInstalled atomic.Int64
	hammer := func(base, method, path, token string, body any) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := ta.callAt(t, base, method, path, token, body)
			switch {
			case r.status == 200 || r.status == 201:
				served.Add(1)
			case r.status == 404 && strings.Contains(string(r.body), `"module_not_installed"`):
				notInstalled.Add(1)
			default:
				t.Errorf("%s %s on %s: %d %s", method, path, base, r.status, r.body)
				return
			}
		}
	}
	create := map[string]any{"title": "Concurrent", "opens_at": "2030-01-01T00:00:00Z", "closes_at": "2030-01-02T00:00:00Z"}
	for _, base := range []string{ta.base, other} {
		wg.Add(3)
		go hammer(base, "GET", a.path("/elections"), a.token, nil)
		go hammer(base, "GET", a.path("/elections?status=draft"), ta.platform, nil)
		go hammer(base, "POST", a.path("/elections"), ta.platform, create)
	}
	live := func(base string) bool {
		return ta.callAt(t, base, "GET", a.path("/elections"), a.token, nil).status == 200
	}
	waitFor := func(base string, want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for live(base) != want {
			require.True(t, time.Now().Before(deadline), "%s: module live=%v not seen within 5s", base, want)
			time.Sleep(5 * time.Millisecond)
		}
	}
	for cycle := 0; cycle < 4; cycle++ {
		ta.call(t, "POST", inst, ta.platform, map[string]any{"module": "elections"}).ok(t, 201)
		assert.True(t, live(ta.base), "live at once on the server that installed it")
		waitFor(other, true)
		time.Sleep(150 * time.Millisecond)
		r := ta.call(t, "DELETE", inst+"/elections?purge=true", ta.platform, nil)
		require.Equal(t, 204, r.status, "%s", r.body)
		assert.False(t, live(ta.base), "gone at once on the server that uninstalled it")
		waitFor(other, false)
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	assert.Positive(t, served.Load())
	assert.Positive(t, notInstalled.Load())
	t.Logf("answers: %d served, %d module_not_installed", served.Load(), notInstalled.Load())
}

// callAt is call against another server of the same test.
func (ta *tenantAPI) callAt(t *testing.T, base, method, path, token string, body any) resp {
	t.Helper()
	cp := *ta.api
	cp.base = base
	return cp.call(t, method, path, token, body)
}
