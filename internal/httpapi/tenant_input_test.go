package httpapi_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/httpapi"
	"github.com/publicdigit/publicdigit/internal/modules"
)

// Bad input of every kind is a 4xx problem+json that names the problem,
// never a 500, and changes nothing.
func TestTenantAPIBadInput(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{bodyLimit: 4096})
	a := ta.tenant(t, "tbada")
	b := ta.tenant(t, "tbadb")
	memberID := ta.member(t, a, map[string]any{"full_name": "Valid", "email": "valid@example.org"})
	for i := 0; i < 3; i++ {
		ta.member(t, a, map[string]any{"full_name": "More"})
		ta.member(t, b, map[string]any{"full_name": "More"})
	}
	card := ta.card(t, a, memberID)
	cardID := card["id"].(string)
	ta.card(t, a, memberID)
	ta.card(t, a, memberID)
	ta.call(t, "POST", a.path("/cards/validate"), a.token, map[string]any{"qr_code": card["qr_code"]}).ok(t, 200)

	// Real cursors to tamper with.
	next := func(tt testTenant, path string) string {
		t.Helper()
		n := ta.call(t, "GET", tt.path(path), tt.token, nil).ok(t, 200)["next"]
		require.NotNil(t, n, path)
		return n.(string)
	}
	aMembers := next(a, "/members?limit=1")
	aActive := next(a, "/members?limit=1&status=active")
	bMembers := next(b, "/members?limit=1")
	aCards := next(a, "/cards?limit=1")
	aActs := next(a, "/cards/"+cardID+"/activities?limit=1")
	ta.call(t, "GET", a.path("/members?after="+aMembers), a.token, nil).ok(t, 200)
	ta.call(t, "GET", a.path("/members?status=active&after="+aActive), a.token, nil).ok(t, 200)
	flip := func(c string, i int) string {
		raw, err := base64.RawURLEncoding.DecodeString(c)
		require.NoError(t, err)
		raw[i] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	forged := base64.RawURLEncoding.EncodeToString(append([]byte{1}, make([]byte, 32)...))
	before := counts(t, a)

	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/members", `{"full_name": `, 400, "bad_request"},
		{"trailing garbage", "POST", "/members", `{"full_name": "x"} {}`, 400, "bad_request"},
		{"not an object", "POST", "/members", `["x"]`, 400, "bad_request"},
		{"empty body", "POST", "/members", nil, 400, "bad_request"},
		{"unknown field", "POST", "/members", `{"full_name": "x", "colour": "red"}`, 400, "bad_request"},
		{"wrong type", "POST", "/members", `{"full_name": 7}`, 400, "bad_request"},
		{"oversize body", "POST", "/members", `{"full_name": "` + strings.Repeat("x", 5000) + `"}`, 413, "body_too_large"},
		{"empty name", "POST", "/members", `{"full_name": "  "}`, 400, "invalid_member"},
		{"long name", "POST", "/members", `{"full_name": "` + strings.Repeat("é", 201) + `"}`, 400, "invalid_member"},
		{"NUL in name", "POST", "/members", `{"full_name": "a\u0000b"}`, 400, "invalid_member"},
		{"bad email", "POST", "/members", `{"full_name": "x", "email": "not an email"}`, 400, "invalid_member"},
		{"bad phone", "POST", "/members", `{"full_name": "x", "phone": "call me"}`, 400, "invalid_member"},
		{"bad status", "POST", "/members", `{"full_name": "x", "status": "vip"}`, 400, "invalid_member"},
		{"unknown geo unit", "POST", "/members", `{"full_name": "x", "geo_unit_id": 9007199254740000}`, 400, "unknown_geo_unit"},
		{"geo unit not a number", "POST", "/members", `{"full_name": "x", "geo_unit_id": "12"}`, 400, "bad_request"},
		{"geo unit fraction", "POST", "/members", `{"full_name": "x", "geo_unit_id": 1.5}`, 400, "bad_request"},
		{"geo unit huge", "POST", "/members", `{"full_name": "x", "geo_unit_id": 1e40}`, 400, "bad_request"},
		{"bad joined_at", "POST", "/members", `{"full_name": "x", "joined_at": "yesterday"}`, 400, "bad_request"},
		{"patch null name", "PATCH", "/members/" + memberID, `{"full_name": null}`, 400, "bad_request"},
		{"patch null status", "PATCH", "/members/" + memberID, `{"status": null}`, 400, "bad_request"},
		{"patch unknown field", "PATCH", "/members/" + memberID, `{"nickname": "x"}`, 400, "bad_request"},
		{"patch bad email", "PATCH", "/members/" + memberID, `{"email": "@"}`, 400, "invalid_member"},
		{"patch wrong type", "PATCH", "/members/" + memberID, `{"full_name": 5}`, 400, "bad_request"},
		{"invalid uuid", "GET", "/members/not-a-uuid", nil, 400, "invalid_id"},
		{"uuid without dashes", "GET", "/members/0190f5a47c1e7d3b9a2e4f6b8c0d1e2f", nil, 400, "invalid_id"},
		{"uuid in braces", "GET", "/members/{0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f}", nil, 400, "invalid_id"},
		{"sql in id", "GET", "/members/" + url.PathEscape("1' OR '1'='1"), nil, 400, "invalid_id"},
		{"invalid uuid patch", "PATCH", "/members/xyz", `{"full_name": "x"}`, 400, "invalid_id"},
		{"invalid uuid delete", "DELETE", "/members/xyz", nil, 400, "invalid_id"},
		{"invalid card uuid", "GET", "/cards/123", nil, 400, "invalid_id"},
		{"invalid card uuid action", "POST", "/cards/123/revoke", nil, 400, "invalid_id"},
		{"invalid card uuid activities", "GET", "/cards/123/activities", nil, 400, "invalid_id"},
		{"member_id not a uuid", "POST", "/cards", `{"member_id": "42"}`, 400, "invalid_id"},
		{"member_id missing", "POST", "/cards", `{}`, 400, "invalid_id"},
		{"member_id wrong type", "POST", "/cards", `{"member_id": 42}`, 400, "bad_request"},
		{"expiry in the past", "POST", "/cards", `{"member_id": "` + memberID + `", "expires_at": "2001-01-01T00:00:00Z"}`, 400, "invalid_card"},
		{"expiry too far", "POST", "/cards", `{"member_id": "` + memberID + `", "expires_at": "2999-01-01T00:00:00Z"}`, 400, "invalid_card"},
		{"expiry not a time", "POST", "/cards", `{"member_id": "` + memberID + `", "expires_at": "soon"}`, 400, "bad_request"},
		{"transition body", "POST", "/cards/" + cardID + "/activate", `{"force": true}`, 400, "bad_request"},
		{"transition malformed body", "POST", "/cards/" + cardID + "/revoke", `{`, 400, "bad_request"},
		{"empty qr", "POST", "/cards/validate", `{"qr_code": ""}`, 400, "invalid_card"},
		{"long qr", "POST", "/cards/validate", `{"qr_code": "` + strings.Repeat("Q", 129) + `"}`, 400, "invalid_card"},
		{"NUL in qr", "POST", "/cards/validate", `{"qr_code": "PD1-\u0000"}`, 400, "invalid_card"},
		{"qr unknown field", "POST", "/cards/validate", `{"qr": "x"}`, 400, "bad_request"},
		{"limit zero", "GET", "/members?limit=0", nil, 400, "bad_request"},
		{"limit negative", "GET", "/members?limit=-1", nil, 400, "bad_request"},
		{"limit too big", "GET", "/members?limit=101", nil, 400, "bad_request"},
		{"limit not a number", "GET", "/cards?limit=ten", nil, 400, "bad_request"},
		{"limit overflow", "GET", "/cards?limit=99999999999999999999", nil, 400, "bad_request"},
		{"activities limit", "GET", "/cards/" + cardID + "/activities?limit=0", nil, 400, "bad_request"},
		{"member status filter", "GET", "/members?status=vip", nil, 400, "invalid_member"},
		{"card status filter", "GET", "/cards?status=lost", nil, 400, "invalid_card"},
		{"geo filter", "GET", "/members?geo_unit_id=abc", nil, 400, "bad_request"},
		{"geo filter zero", "GET", "/members?geo_unit_id=0", nil, 400, "bad_request"},
		{"geo filter unknown", "GET", "/members?geo_unit_id=9007199254740000", nil, 400, "unknown_geo_unit"},
		{"member filter", "GET", "/cards?member_id=me", nil, 400, "invalid_id"},
		{"forged cursor", "GET", "/members?after=" + forged, nil, 400, "invalid_cursor"},
		{"garbage cursor", "GET", "/members?after=" + url.QueryEscape("'; DROP TABLE members; --"), nil, 400, "invalid_cursor"},
		{"plain uuid cursor", "GET", "/members?after=" + uuid.NewString(), nil, 400, "invalid_cursor"},
		{"truncated cursor", "GET", "/members?after=" + aMembers[:len(aMembers)-2], nil, 400, "invalid_cursor"},
		{"tampered id", "GET", "/members?after=" + flip(aMembers, 5), nil, 400, "invalid_cursor"},
		{"tampered mac", "GET", "/members?after=" + flip(aMembers, 30), nil, 400, "invalid_cursor"},
		{"tampered version", "GET", "/members?after=" + flip(aMembers, 0), nil, 400, "invalid_cursor"},
		{"cursor of another tenant", "GET", "/members?after=" + bMembers, nil, 400, "invalid_cursor"},
		{"cursor of another filter", "GET", "/members?after=" + aActive, nil, 400, "invalid_cursor"},
		{"cursor without its filter", "GET", "/members?status=inactive&after=" + aActive, nil, 400, "invalid_cursor"},
		{"cursor of another listing", "GET", "/members?after=" + aCards, nil, 400, "invalid_cursor"},
		{"cards cursor, other filter", "GET", "/cards?status=issued&after=" + aCards, nil, 400, "invalid_cursor"},
		{"activities cursor on cards", "GET", "/cards?after=" + aActs, nil, 400, "invalid_cursor"},
		{"activities cursor, other card", "GET", "/cards/" + uuid.NewString() + "/activities?after=" + aActs, nil, 400, "invalid_cursor"},
	}
	for _, c := range cases {
		r := ta.call(t, c.method, a.path(c.path), a.token, c.body)
		assertNo500(t, r, c.name)
		p := r.problem(t, c.status, c.code)
		assert.NotEmpty(t, p["detail"], c.name)
	}
	// Other content types, and a cross-tenant cursor used by the platform token.
	ta.callCT(t, "POST", a.path("/members"), a.token, "text/plain", `{"full_name":"x"}`).problem(t, 415, "unsupported_media_type")
	ta.call(t, "GET", a.path("/members?after="+bMembers), ta.platform, nil).problem(t, 400, "invalid_cursor")
	ta.call(t, "GET", b.path("/members?after="+bMembers), ta.platform, nil).ok(t, 200)
	assert.Equal(t, before, counts(t, a), "no bad request changed anything")
	assert.Equal(t, "Valid", ta.call(t, "GET", a.pathf("/members/%s", memberID), a.token, nil).ok(t, 200)["full_name"])
}

// The response check covers the tenant routes: answers that differ from the
// document fail it.
func TestTenantOpenAPICheckCatchesMismatches(t *testing.T) {
	t.Parallel()
	router, err := gorillamux.NewRouter(httpapi.OpenAPI())
	require.NoError(t, err)
	req, err := http.NewRequest("GET", "http://x/acme/api/v1/members/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f", nil)
	require.NoError(t, err)
	h := http.Header{"Content-Type": {"application/json"}}
	good := `{"id":"0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f","tenant_id":"7d4c1a80-61a5-4c4b-9a63-8b0f4f1e2a10",
		"full_name":"A","email":null,"phone":null,"status":"active","geo_unit_id":null,"joined_at":"2026-01-01T00:00:00Z",
		"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`
	assert.NoError(t, validateResponse(router, req, resp{status: 200, header: h, body: []byte(good)}))
	for name, r := range map[string]resp{
		"missing field": {status: 200, header: h, body: []byte(`{"id":"0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f"}`)},
		"extra field":   {status: 200, header: h, body: []byte(strings.Replace(good, `"email"`, `"secret":"x","email"`, 1))},
		"bad enum":      {status: 200, header: h, body: []byte(strings.Replace(good, `"active"`, `"vip"`, 1))},
		"undocumented":  {status: 418, header: h, body: []byte(`{}`)},
	} {
		assert.Error(t, validateResponse(router, req, r), name)
	}
}

// Hostile input on the election routes: every one a 4xx problem+json that
// names the problem, never a 500, and nothing changes.
func TestTenantAPIElectionBadInput(t *testing.T) {
	t.Parallel()
	ta := newTenantAPI(t, tenantAPIOptions{bodyLimit: 4096})
	a := ta.tenant(t, "tebad", modules.Elections)
	b := ta.tenant(t, "tebadb", modules.Elections)
	m := ta.voter(t, a, "Voter")
	draft := ta.draftElection(t, a, m)
	open := ta.draftElection(t, a, m)
	ta.call(t, "POST", a.path("/elections/"+open.election+"/open"), ta.platform, nil).ok(t, 200)
	ta.draftElection(t, b, ta.voter(t, b, "B"))
	ta.draftElection(t, b, ta.voter(t, b, "B2"))
	next := func(tt testTenant, path string) string {
		t.Helper()
		n := ta.call(t, "GET", tt.path(path), ta.platform, nil).ok(t, 200)["next"]
		require.NotNil(t, n, path)
		return n.(string)
	}
	aList := next(a, "/elections?limit=1")
	bList := next(b, "/elections?limit=1")
	aActs := next(a, "/elections/"+draft.election+"/activities?limit=1")
	d, o := "/elections/"+draft.election, "/elections/"+open.election
	pos, cand := d+"/positions/"+draft.position, d+"/positions/"+draft.position+"/candidates"
	before := counts(t, a)
	long := strings.Repeat("é", 201)
	okTimes := `"opens_at": "2030-01-01T00:00:00Z", "closes_at": "2030-01-02T00:00:00Z"`
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/elections", `{"title": `, 400, "bad_request"},
		{"not an object", "POST", "/elections", `[1, 2]`, 400, "bad_request"},
		{"empty body", "POST", "/elections", nil, 400, "bad_request"},
		{"unknown field", "POST", "/elections", `{"title": "x", ` + okTimes + `, "status": "open"}`, 400, "bad_request"},
		{"title wrong type", "POST", "/elections", `{"title": 5, ` + okTimes + `}`, 400, "bad_request"},
		{"title empty", "POST", "/elections", `{"title": "  ", ` + okTimes + `}`, 400, "invalid_election"},
		{"title too long", "POST", "/elections", `{"title": "` + long + `", ` + okTimes + `}`, 400, "invalid_election"},
		{"title NUL", "POST", "/elections", `{"title": "a\u0000b", ` + okTimes + `}`, 400, "invalid_election"},
		{"description control", "POST", "/elections", `{"title": "x", "description": "a\u0007", ` + okTimes + `}`, 400, "invalid_election"},
		{"oversize body", "POST", "/elections", `{"title": "x", "description": "` + strings.Repeat("d", 5000) + `", ` + okTimes + `}`, 413, "body_too_large"},
		{"no times", "POST", "/elections", `{"title": "x"}`, 400, "invalid_election"},
		{"time not a time", "POST", "/elections", `{"title": "x", "opens_at": "tomorrow", "closes_at": "2030-01-02T00:00:00Z"}`, 400, "bad_request"},
		{"closes before opens", "POST", "/elections", `{"title": "x", "opens_at": "2030-01-02T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"}`, 400, "invalid_election"},
		{"year 1", "POST", "/elections", `{"title": "x", "opens_at": "0001-01-01T00:00:00Z", "closes_at": "2030-01-01T00:00:00Z"}`, 400, "invalid_election"},
		{"year 9999", "POST", "/elections", `{"title": "x", "opens_at": "2030-01-01T00:00:00Z", "closes_at": "9999-12-31T23:59:59Z"}`, 400, "invalid_election"},
		{"scope unknown", "POST", "/elections", `{"title": "x", ` + okTimes + `, "scope_unit_id": 9007199254740000}`, 400, "unknown_geo_unit"},
		{"scope negative", "POST", "/elections", `{"title": "x", ` + okTimes + `, "scope_unit_id": -1}`, 400, "invalid_election"},
		{"scope a string", "POST", "/elections", `{"title": "x", ` + okTimes + `, "scope_unit_id": "1"}`, 400, "bad_request"},
		{"scope huge", "POST", "/elections", `{"title": "x", ` + okTimes + `, "scope_unit_id": 1e40}`, 400, "bad_request"},
		{"patch nothing", "PATCH", d, `{}`, 400, "invalid_election"},
		{"patch null title", "PATCH", d, `{"title": null}`, 400, "bad_request"},
		{"patch null opens_at", "PATCH", d, `{"opens_at": null}`, 400, "bad_request"},
		{"patch window inverted", "PATCH", d, `{"closes_at": "2001-01-01T00:00:00Z"}`, 400, "invalid_election"},
		{"patch unknown field", "PATCH", d, `{"seats": 3}`, 400, "bad_request"},
		{"patch bad id", "PATCH", "/elections/nope", `{"title": "x"}`, 400, "invalid_id"},
		{"get bad id", "GET", "/elections/1' OR '1'='1", nil, 400, "invalid_id"},
		{"get unknown", "GET", "/elections/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f", nil, 404, "election_not_found"},
		{"position seats zero", "POST", d + "/positions", `{"title": "x", "seats": 0}`, 400, "invalid_election"},
		{"position seats negative", "POST", d + "/positions", `{"title": "x", "seats": -3}`, 400, "invalid_election"},
		{"position seats huge", "POST", d + "/positions", `{"title": "x", "seats": 99999999999}`, 400, "invalid_election"},
		{"position seats fraction", "POST", d + "/positions", `{"title": "x", "seats": 1.5}`, 400, "bad_request"},
		{"position seats string", "POST", d + "/positions", `{"title": "x", "seats": "1"}`, 400, "bad_request"},
		{"position no title", "POST", d + "/positions", `{"seats": 1}`, 400, "invalid_election"},
		{"position of an open election", "POST", o + "/positions", `{"title": "x", "seats": 1}`, 409, "election_locked"},
		{"position bad id", "DELETE", d + "/positions/xyz", nil, 400, "invalid_id"},
		{"position unknown", "DELETE", d + "/positions/0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f", nil, 404, "position_not_found"},
		{"candidate member missing", "POST", cand, `{}`, 400, "invalid_id"},
		{"candidate member not a uuid", "POST", cand, `{"member_id": "me"}`, 400, "invalid_id"},
		{"candidate member wrong type", "POST", cand, `{"member_id": 7}`, 400, "bad_request"},
		{"candidate member unknown", "POST", cand, `{"member_id": "0190f5a4-7c1e-7d3b-9a2e-4f6b8c0d1e2f"}`, 404, "member_not_found"},
		{"candidate twice", "POST", cand, `{"member_id": "` + m + `"}`, 409, "candidate_exists"},
		{"candidate bad id", "DELETE", pos + "/candidates/42", nil, 400, "invalid_id"},
		{"transition body", "POST", d + "/open", `{"force": true}`, 400, "bad_request"},
		{"transition text", "POST", d + "/publish", `please`, 400, "bad_request"},
		{"ballot empty", "POST", o + "/ballots", `{}`, 400, "invalid_id"},
		{"ballot member wrong type", "POST", o + "/ballots", `{"member_id": ["x"]}`, 400, "bad_request"},
		{"ballot choices an object", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": {"a": 1}}`, 400, "bad_request"},
		{"ballot choice without position", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [{"candidate_ids": []}]}`, 400, "invalid_id"},
		{"ballot candidate not a uuid", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [{"position_id": "` + open.position + `", "candidate_ids": ["x"]}]}`, 400, "invalid_id"},
		{"ballot candidate ids a string", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [{"position_id": "` + open.position + `", "candidate_ids": "` + open.candidate + `"}]}`, 400, "bad_request"},
		{"ballot unknown field", "POST", o + "/ballots", `{"member_id": "` + m + `", "weight": 2}`, 400, "bad_request"},
		{"ballot nested garbage", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [[[[]]]]}`, 400, "bad_request"},
		{"ballot duplicate candidate", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [{"position_id": "` + open.position + `", "candidate_ids": ["` + open.candidate + `", "` + open.candidate + `"]}]}`, 400, "invalid_ballot"},
		{"ballot in a draft", "POST", d + "/ballots", `{"member_id": "` + m + `"}`, 409, "election_not_open"},
		{"ballot of a draft candidate", "POST", o + "/ballots", `{"member_id": "` + m + `", "choices": [{"position_id": "` + draft.position + `", "candidate_ids": ["` + draft.candidate + `"]}]}`, 400, "invalid_ballot"},
		{"results of a draft", "GET", d + "/results", nil, 409, "results_not_available"},
		{"results bad id", "GET", "/elections/%00/results", nil, 400, "invalid_id"},
		{"list status", "GET", "/elections?status=running", nil, 400, "invalid_election"},
		{"list limit", "GET", "/elections?limit=0", nil, 400, "bad_request"},
		{"list limit huge", "GET", "/elections?limit=1000", nil, 400, "bad_request"},
		{"activities limit", "GET", d + "/activities?limit=-1", nil, 400, "bad_request"},
		{"cursor of another tenant", "GET", "/elections?limit=1&after=" + bList, nil, 400, "invalid_cursor"},
		{"cursor of another filter", "GET", "/elections?status=open&after=" + aList, nil, 400, "invalid_cursor"},
		{"cursor of the activities", "GET", "/elections?after=" + aActs, nil, 400, "invalid_cursor"},
		{"activities cursor, other election", "GET", o + "/activities?after=" + aActs, nil, 400, "invalid_cursor"},
		{"garbage cursor", "GET", "/elections?after=" + url.QueryEscape("'; DROP TABLE elections; --"), nil, 400, "invalid_cursor"},
	}
	for _, c := range cases {
		r := ta.call(t, c.method, a.path(c.path), ta.platform, c.body)
		assertNo500(t, r, c.name)
		p := r.problem(t, c.status, c.code)
		assert.NotEmpty(t, p["detail"], c.name)
	}
	// The tenant's own token: an admin's cursor is not its listing's; a
	// draft's ballot is a missing election.
	ta.call(t, "GET", a.path("/elections?limit=1&after="+aList), a.token, nil).problem(t, 400, "invalid_cursor")
	ta.call(t, "POST", a.path(d+"/ballots"), a.token, map[string]any{"member_id": m}).problem(t, 404, "election_not_found")
	ta.callCT(t, "POST", a.path(o+"/ballots"), a.token, "text/plain", `{"member_id": "`+m+`"}`).problem(t, 415, "unsupported_media_type")
	assert.Equal(t, before, counts(t, a), "no bad request changed anything")
}
