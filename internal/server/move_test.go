package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/catalog/catalogtest"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// The whole story of issue #7 over HTTP, with two PostgreSQL servers: a
// tenant created on cluster main in schema placement moves to a dedicated
// database on cluster b (logical mode), then back to schema placement on
// main (lock mode), while writers issue numbered writes at full speed and a
// reader reads all along. Every write answered 2xx is present exactly once
// afterwards, every other answer is a 503 with Retry-After, and every read
// is answered 200 or, during a switch's last step, 503 with Retry-After.
func TestMovesOverHTTPWhileServing(t *testing.T) {
	dbtest.Landlord(t)
	cfg := dbtest.Config(t)
	dbtest.WithClusterB(t, &cfg)
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Tenant.WarmPool = 0
	cfg.HTTP.WriteWait = 300 * time.Millisecond
	cfg.HTTP.CursorSecret = "a server test secret of 32+ bytes!"

	srv := start(t, cfg)
	base := srv.base
	secret, tok, err := srv.app.Tokens.Create(context.Background(), access.CreateRequest{Name: "move test", Kind: access.KindPlatform})
	require.NoError(t, err)
	dbtest.DeleteTokenAtCleanup(t, tok.ID)
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections) // before the server stops: no keep-alive to wait for
	call := func(method, path string, body any) (int, http.Header, []byte) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, base+path, rd)
		if err != nil {
			return 0, nil, nil
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}

	slug := tenant.MustSlug(dbtest.Name("mvhttp"))
	t.Cleanup(func() { cleanupMovedTenant(t, cfg, slug) })
	code, _, body := call("POST", "/api/v1/platform/tenants", map[string]any{"slug": slug.String(), "name": "Moving Co"})
	require.Equal(t, 201, code, "%s", body)

	tenantPath := "/" + slug.String() + "/api/v1"
	var (
		mu      sync.Mutex
		acked   = map[string]int{}
		refused = map[int]int{}
		noRetry int
		next    atomic.Int64
		reads   atomic.Int64
		badRead atomic.Int64
		// reads told to retry
		readRetry atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad) // also when an assertion below ends the test early
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w-%06d", next.Add(1))
				code, h, _ := call("POST", tenantPath+"/members", map[string]any{"full_name": name})
				mu.Lock()
				if code >= 200 && code < 300 {
					acked[name]++
				} else {
					refused[code]++
					if h == nil || h.Get("Retry-After") == "" {
						noRetry++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, h, body := call("GET", tenantPath+"/members?limit=5", nil)
			reads.Add(1)
			switch {
			case code == 200:
			case code == 503 && h.Get("Retry-After") != "":
				// The switch's last step locks readers out of the copy
				// being retired (they must not read it stale): told to retry.
				readRetry.Add(1)
			default:
				badRead.Add(1)
				t.Logf("read answered %d: %s", code, body)
			}
		}
	}()

	time.Sleep(300 * time.Millisecond)
	for _, target := range []map[string]any{
		{"placement": "database", "cluster": "b"},
		{"placement": "schema", "cluster": "main", "mode": "lock"},
	} {
		t0 := time.Now()
		code, h, body := call("PATCH", "/api/v1/platform/tenants/"+slug.String(), target)
		require.Equal(t, 200, code, "move to %v: %s", target, body)
		t.Logf("move to %v took %s (write pause %s ms)", target, time.Since(t0), h.Get("X-Move-Write-Pause-Ms"))
		var got map[string]any
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Equal(t, target["placement"], got["placement"])
		assert.Equal(t, target["cluster"], got["cluster"])
		assert.NotEmpty(t, h.Get("X-Move-Write-Pause-Ms"))
		time.Sleep(300 * time.Millisecond)
	}
	// Moving to where it is, to an unknown cluster, or to nowhere: refused, nothing changed.
	code, _, body = call("PATCH", "/api/v1/platform/tenants/"+slug.String(), map[string]any{"placement": "schema", "cluster": "main"})
	assert.Equal(t, 409, code, "%s", body)
	code, _, body = call("PATCH", "/api/v1/platform/tenants/"+slug.String(), map[string]any{"cluster": "mars"})
	assert.Equal(t, 400, code, "%s", body)
	code, _, body = call("PATCH", "/api/v1/platform/tenants/"+slug.String(), map[string]any{"placement": "cloud"})
	assert.Equal(t, 400, code, "%s", body)
	code, _, body = call("PATCH", "/api/v1/platform/tenants/"+slug.String(), map[string]any{"placement": "database", "mode": "rsync"})
	assert.Equal(t, 400, code, "%s", body)
	code, _, body = call("GET", "/metrics", nil)
	assert.Equal(t, 200, code)
	assert.Contains(t, string(body), `publicdigit_moves_in_progress{mode="logical"}`)
	stopLoad()

	// Read everything back through the API.
	live := map[string]int{}
	after := ""
	for {
		q := "?limit=100"
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		code, _, body := call("GET", tenantPath+"/members"+q, nil)
		require.Equal(t, 200, code, "%s", body)
		var page struct {
			Items []struct {
				FullName string `json:"full_name"`
			} `json:"items"`
			Next *string `json:"next"`
		}
		require.NoError(t, json.Unmarshal(body, &page))
		for _, m := range page.Items {
			live[m.FullName]++
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, acked)
	for name := range acked {
		assert.Equal(t, 1, live[name], "acknowledged write %s present exactly once", name)
	}
	for name, n := range live {
		assert.Equal(t, 1, n, "%s present once", name)
		assert.Equal(t, 1, acked[name], "%s present but never acknowledged", name)
	}
	for code, n := range refused {
		assert.Equal(t, 503, code, "%d writes answered %d", n, code)
	}
	assert.Zero(t, noRetry, "every refused write carries Retry-After")
	assert.Zero(t, badRead.Load(), "reads are served throughout, or told to retry")
	t.Logf("%d writes acknowledged, refused %v, %d reads (%d told to retry)", len(acked), refused, reads.Load(), readRetry.Load())
}

// cleanupMovedTenant removes a tenant that may have lived on both clusters.
func cleanupMovedTenant(t *testing.T, cfg config.Config, slug tenant.Slug) {
	t.Helper()
	ctx := context.Background()
	a, err := app.Open(ctx, cfg, zerolog.Nop(), app.Options{})
	if err != nil {
		t.Errorf("cleanup %s: %v", slug, err)
		return
	}
	defer a.Close()
	if catalogtest.Exists(t, a.Admin, slug) {
		catalogtest.SetStatusQuietly(t, a.Admin, slug, tenant.StatusDeleted)
	}
	if err := a.Provisioner.Purge(ctx, slug); err != nil {
		t.Logf("cleanup %s: %v", slug, err)
	}
	for _, cl := range []string{"main", "b"} {
		_ = a.Clusters.DropDatabase(ctx, cl, slug.DatabaseName())
		if db, err := a.Clusters.Admin(cl); err == nil {
			_, _ = db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{slug.SchemaName()}.Sanitize()+" CASCADE")
			_, _ = db.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{slug.RoleName()}.Sanitize())
		}
	}
}
