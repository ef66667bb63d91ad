package move

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The one-line reasons the logical mode gives for a server or a tenant it
// cannot stream (the servers of the tests can: their settings are checked
// here without a restart).
func TestLogicalBlocker(t *testing.T) {
	for _, c := range []struct {
		walLevel     string
		replication  bool
		slots, sends int
		keyless      []string
		want         string
	}{
		{"replica", true, 10, 10, nil, "wal_level is replica on cluster main (logical replication needs wal_level = logical, then a restart)"},
		{"logical", false, 10, 10, nil, "role pd_admin has no REPLICATION attribute on cluster main (ALTER ROLE pd_admin REPLICATION)"},
		{"logical", true, 1, 10, nil, "cluster main has 1 free replication slots, a move needs 2 (max_replication_slots)"},
		{"logical", true, 10, -1, nil, "cluster main has 0 free WAL senders, a move needs 2 (max_wal_senders)"},
		{"logical", true, 10, 10, []string{"notes", "tags"}, "tables notes, tags have no primary key to apply their changes by"},
		{"logical", true, 10, 10, []string{"notes"}, "table notes has no primary key to apply its changes by"},
		{"logical", true, 2, 2, nil, ""},
	} {
		got := logicalBlocker("main", c.walLevel, "pd_admin", c.replication, c.slots, c.sends, c.keyless)
		assert.Equal(t, c.want, got)
		assert.False(t, strings.Contains(got, "\n"))
	}
}

// The copy's tasks: loads first, largest table first; a table's builds only
// once it is loaded, the costliest first; done when nothing is left, and at
// once for every waiting worker when the copy fails.
func TestWorkOrder(t *testing.T) {
	tbls := []table{{name: "small"}, {name: "big"}}
	items := []indexItem{
		{table: "small", index: "small_pkey", columns: 1},
		{table: "big", index: "big_pkey", columns: 1},
		{table: "big", index: "big_wide_idx", columns: 3},
	}
	w := newWork(tbls, items, map[string]int64{"small": 10, "big": 100})
	var got []string
	name := func(tk task) string {
		if tk.load != nil {
			return "load " + tk.load.name
		}
		return tk.build.index
	}
	for range 2 {
		tk, ok := w.next()
		assert.True(t, ok)
		got = append(got, name(tk))
	}
	w.loaded("small")
	tk, _ := w.next()
	got = append(got, name(tk))
	w.loaded("big")
	for {
		tk, ok := w.next()
		if !ok {
			break
		}
		got = append(got, name(tk))
	}
	assert.Equal(t, []string{"load big", "load small", "small_pkey", "big_wide_idx", "big_pkey"}, got)

	// A worker waiting for a load to finish is released by a failure.
	w = newWork(tbls[:1], items[:1], nil)
	_, _ = w.next()
	done := make(chan bool)
	go func() { _, ok := w.next(); done <- ok }()
	w.fail()
	assert.False(t, <-done)
}
