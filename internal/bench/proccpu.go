package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the kernel's USER_HZ (100 on Linux for all common builds).
const clockTick = 100

// serverCPU sums the CPU time used so far by the PostgreSQL backends whose
// process title names database db, and by every pgbouncer process. On a
// shared, noisy machine CPU time per request is steadier than throughput:
// it measures work done, not time waited for a core.
func serverCPU(db string) time.Duration { return procCPU(db, true) }

// backendCPU is serverCPU without PgBouncer (every pgbouncer of the
// machine would count, other users' too).
func backendCPU(db string) time.Duration { return procCPU(db, false) }

func procCPU(db string, bouncers bool) time.Duration {
	var ticks int64
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil {
			continue
		}
		title := string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
		isBackend := strings.HasPrefix(title, "postgres: ") && strings.Contains(title, " "+db+" ")
		isBouncer := bouncers && strings.Contains(filepath.Base(strings.Fields(title + " x")[0]), "pgbouncer")
		if !isBackend && !isBouncer {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name; utime and stime
		// are fields 14 and 15 of the whole line.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / clockTick
}
