package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/chaos"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
)

// Every way the database or its pooler can be out of reach is answered 503
// with Retry-After — never 500, never a hang past the request's deadline —
// on every kind of route: token lookups, catalog reads, geography, tenant
// resolution and the tenant's own statements. Then the server recovers by
// itself. The landlord and the tenant pool reach PgBouncer through a relay
// that the test stops, stalls, or points at a fake pooler that refuses the
// way PgBouncer does after a restart (08P01 "server login has been
// failing", query_wait_timeout; 53300 max_client_conn).
func TestDatabaseOutagesAre503(t *testing.T) {
	t.Parallel()
	proxy, err := chaos.NewProxy("127.0.0.1:0", "127.0.0.1:16432")
	require.NoError(t, err)
	t.Cleanup(proxy.Close)
	const deadline = 1500 * time.Millisecond
	var logs syncBuffer
	ta := newTenantAPI(t, tenantAPIOptions{api: apiOptions{
		log: &logs, tokenCache: time.Minute, requestTimeout: deadline,
		configure: func(c *config.Config) {
			c.Landlord.URL = dbtest.WithPort(t, c.Landlord.URL, proxy.Port())
			main := c.Clusters[c.DefaultCluster]
			main.URL = dbtest.WithPort(t, main.URL, proxy.Port())
			c.Clusters = map[string]config.Cluster{c.DefaultCluster: main}
		},
	}})
	tt := ta.tenant(t, "outage")
	cold := ta.tenant(t, "outcold") // never resolved before the faults
	// Tokens the server has not seen yet, made beside it (not through the relay).
	direct := access.New(dbtest.AppPool(t, dbtest.Bouncer, 2), nil, access.Options{})
	fresh := func() string {
		secret, tok, err := direct.Create(context.Background(), access.CreateRequest{Name: "fresh", Kind: access.KindPlatform})
		require.NoError(t, err)
		dbtest.DeleteTokenAtCleanup(t, tok.ID)
		return secret
	}
	type call struct{ method, path, token, body string }
	calls := func(unseen string) []call {
		return []call{
			{"GET", "/api/v1/platform/tenants", unseen, ""}, // token lookup
			{"GET", "/api/v1/platform/tenants", ta.platform, ""},
			{"GET", "/api/v1/platform/tenants/" + tt.Slug, ta.platform, ""},
			{"GET", "/api/v1/platform/tokens", ta.platform, ""},
			{"GET", "/api/v1/platform/modules", ta.platform, ""},
			{"GET", "/api/v1/geography/units", tt.token, ""},
			{"GET", tt.path("/members"), tt.token, ""},
			{"POST", tt.path("/members"), tt.token, `{"full_name":"During an outage"}`},
			{"GET", cold.path("/members"), ta.platform, ""}, // tenant resolution
		}
	}
	allOK := func() bool {
		for _, c := range calls(ta.platform) {
			if r := ta.call(t, c.method, c.path, c.token, nilIfEmpty(c.body)); r.status >= 300 {
				return false
			}
		}
		return true
	}
	require.True(t, allOK())
	before := counts(t, tt)

	refusing := fakePooler(t, func(be *pgproto3.Backend) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "08P01", Message: "server login has been failing, try again later (server_login_retry)"})
	}, nil)
	waiting := fakePooler(t, nil, func(be *pgproto3.Backend) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "08P01", Message: "query_wait_timeout"})
	})
	full := fakePooler(t, func(be *pgproto3.Backend) {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "53300", Message: "no more connections allowed (max_client_conn)"})
	}, nil)
	for _, fault := range []struct {
		name          string
		break_, mend  func()
		outOfTimeOnly bool
	}{
		{"pooler down", proxy.Down, func() { require.NoError(t, proxy.Up()) }, false},
		{"network stalled", proxy.Stall, proxy.Resume, true},
		{"pooler refuses logins", func() { proxy.SetTarget(refusing); proxy.Cut() }, func() { proxy.SetTarget("127.0.0.1:16432") }, false},
		{"pooler query_wait_timeout", func() { proxy.SetTarget(waiting); proxy.Cut() }, func() { proxy.SetTarget("127.0.0.1:16432") }, false},
		{"pooler full", func() { proxy.SetTarget(full); proxy.Cut() }, func() { proxy.SetTarget("127.0.0.1:16432") }, false},
	} {
		t.Run(fault.name, func(t *testing.T) {
			fault.break_()
			mended := false
			defer func() {
				if !mended {
					fault.mend()
				}
			}()
			for _, c := range calls(fresh()) {
				start := time.Now()
				r := ta.call(t, c.method, c.path, c.token, nilIfEmpty(c.body))
				took := time.Since(start)
				p := r.problem(t, 503, "")
				if fault.outOfTimeOnly {
					assert.Equal(t, "timeout", p["code"], "%s %s", c.method, c.path)
				} else {
					assert.Contains(t, []any{"unavailable", "timeout"}, p["code"], "%s %s: %s", c.method, c.path, r.body)
				}
				assert.Equal(t, "1", r.header.Get("Retry-After"), "%s %s", c.method, c.path)
				assert.Less(t, took, deadline+time.Second, "%s %s: no hang past the deadline", c.method, c.path)
			}
			fault.mend()
			mended = true
			if !assert.Eventually(t, allOK, 15*time.Second, 100*time.Millisecond, "recovered with no hands") {
				t.Log(logs.String()[max(0, len(logs.String())-4000):])
			}
		})
	}

	assert.Equal(t, before["digital_cards"], counts(t, tt)["digital_cards"])
	// Every failure was logged with its request id and cause; none was a 500.
	var n503 int
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, `"message":"request failed"`) {
			continue
		}
		var ev map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &ev))
		assert.Equal(t, float64(503), ev["status"], line)
		assert.NotEmpty(t, ev["request_id"], line)
		assert.NotEmpty(t, ev["error"], line)
		n503++
	}
	assert.GreaterOrEqual(t, n503, 5*len(calls("")))
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// fakePooler serves the PostgreSQL protocol as a refusing PgBouncer does:
// atLogin (if set) answers the startup message; otherwise the login
// succeeds and afterQuery answers the first message that follows. Then it
// closes the connection. It returns its address.
func fakePooler(t *testing.T, atLogin, afterQuery func(*pgproto3.Backend)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				be := pgproto3.NewBackend(conn, conn)
				for {
					msg, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := msg.(*pgproto3.SSLRequest); ok {
						if _, err := conn.Write([]byte("N")); err != nil {
							return
						}
						continue
					}
					break
				}
				if atLogin != nil {
					atLogin(be)
					_ = be.Flush()
					return
				}
				be.Send(&pgproto3.AuthenticationOk{})
				be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
				be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
				be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
				be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 2}})
				be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				if be.Flush() != nil {
					return
				}
				if _, err := be.Receive(); err != nil {
					return
				}
				afterQuery(be)
				_ = be.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (loggers).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
