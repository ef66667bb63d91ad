package pgroute_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
	"github.com/stretchr/testify/assert"

	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// A database or pooler out of reach is ErrUnavailable however pgx reports
// it; errors of other kinds stay as they are.
func TestClassifyUnavailable(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, connectErr := pgx.Connect(context.Background(), "postgres://x@127.0.0.1:1/x?connect_timeout=1")
	for name, err := range map[string]error{
		"connect refused":          connectErr,
		"pgbouncer login failing":  &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "server login has been failing, try again later"},
		"pgbouncer wait timeout":   &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "query_wait_timeout"},
		"pgbouncer full":           &pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "no more connections allowed"},
		"terminated":               &pgconn.PgError{Severity: "FATAL", Code: "57P01"},
		"server shutting down":     &pgconn.PgError{Severity: "FATAL", Code: "57P02"},
		"server starting":          &pgconn.PgError{Severity: "FATAL", Code: "57P03"},
		"connection ended mid-way": fmt.Errorf("list tenants: %w", io.ErrUnexpectedEOF),
		"connection closed":        fmt.Errorf("x: %w", pgconn.ErrConnClosed),
		"reset":                    fmt.Errorf("read: %w", syscall.ECONNRESET),
		"pool closed":              fmt.Errorf("acquire: %w", puddle.ErrClosedPool),
	} {
		assert.ErrorIs(t, pgroute.Classify(err), pgroute.ErrUnavailable, name)
	}
	assert.Error(t, connectErr)
	for name, err := range map[string]error{
		"canceled":  ctx.Err(),
		"no rows":   pgx.ErrNoRows,
		"a bug":     errors.New("nil map"),
		"syntax":    &pgconn.PgError{Code: "42601"},
		"unique":    &pgconn.PgError{Code: "23505"},
		"statement": &pgconn.PgError{Code: "57014"},
	} {
		assert.NotErrorIs(t, pgroute.Classify(err), pgroute.ErrUnavailable, name)
	}
}
