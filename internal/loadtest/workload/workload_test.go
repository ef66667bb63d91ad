package workload

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("read=5, change=1")
	if err != nil || m != (Mix{5, 0, 0, 1}) || m.String() != "read=5,list=0,issue=0,change=1" {
		t.Fatalf("got %v %q %v", m, m.String(), err)
	}
	for _, bad := range []string{"", "read", "read=x", "read=-1", "write=1", "read=0,list=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var s Stats
	for i := 1; i <= 100; i++ {
		s.Latencies = append(s.Latencies, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.95: 95 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := s.Percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p*100, got, want)
		}
	}
}

func TestErrorKindsAndWhetherAWriteMayHaveLanded(t *testing.T) {
	pg := func(code, msg string) error {
		return fmt.Errorf("tenant x: %w", &pgconn.PgError{Code: code, Message: msg})
	}
	for _, tc := range []struct {
		err    error
		kind   string
		unsure bool
	}{
		{pg("53300", "sorry, too many clients already"), "too_many_connections", false},
		{pg("42P01", `relation "digital_cards" does not exist`), "undefined_table", false},
		{pg("08P01", "query_wait_timeout"), "pgbouncer_query_wait_timeout", false},
		{fmt.Errorf("x: %w", pgx.ErrNoRows), "not_found", false},
		{errors.New("modes: transaction was rolled back by the server"), "rolled_back", false},
		{errors.New("read tcp: connection reset by peer"), "other", true},
	} {
		if k := Kind(tc.err); k != tc.kind {
			t.Errorf("%v: kind %s, want %s", tc.err, k, tc.kind)
		}
		if u := unsure(tc.err); u != tc.unsure {
			t.Errorf("%v: unsure %v, want %v", tc.err, u, tc.unsure)
		}
	}
}
