package bouncer_test

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/publicdigit/publicdigit/internal/loadtest/bouncer"
	"github.com/publicdigit/publicdigit/internal/loadtest/modes"
)

// A private PgBouncer serves the application role in transaction mode, and
// Stop leaves neither its process nor its port behind.
func TestPrivateBouncerStartsServesAndStops(t *testing.T) {
	admin, app, err := modes.LocalURLs()
	if err != nil {
		t.Fatal(err)
	}
	au, _ := url.Parse(admin)
	port, _ := strconv.Atoi(au.Port())
	pw, _ := url.Parse(app)
	pass, _ := pw.User.Password()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := bouncer.Start(ctx, bouncer.Config{ServerHost: au.Hostname(), ServerPort: port,
		User: pw.User.Username(), Password: pass, PoolSize: 2, MaxServer: 10})
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.URL(app)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		b.Stop()
		t.Fatal(err)
	}
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	conn.Close(ctx)
	b.Stop()
	if err != nil || one != 1 {
		t.Fatalf("SELECT 1 through the private PgBouncer: %v", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.Port)), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Stop", b.Port)
	}
}
