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
