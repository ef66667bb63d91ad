package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// clockTick is the kernel's USER_HZ (100 on Linux for all common builds).
const clockTick = 100

// serverCPU sums the CPU time used so far by the PostgreSQL backends whose
// process title names database db, and by the pgbouncer processes that
// listen on the scratch database's PgBouncer port (every pgbouncer of the
// machine when that port is not known: other checkouts' would count). On a
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
		isBouncer := bouncers && strings.Contains(filepath.Base(strings.Fields(title + " x")[0]), "pgbouncer") &&
			ownBouncer(filepath.Base(d))
		if !isBackend && !isBouncer {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// bouncerPort is the PgBouncer port of the scratch database (NewScratch);
// 0: unknown.
var bouncerPort atomic.Int32

// ownBouncer reports whether process pid listens on bouncerPort (true when
// the port is unknown or the process cannot be read).
func ownBouncer(pid string) bool {
	port := int(bouncerPort.Load())
	if port == 0 {
		return true
	}
	inodes := listeningInodes(port)
	if len(inodes) == 0 {
		return true
	}
	fds, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return true
	}
	for _, fd := range fds {
		link, err := os.Readlink("/proc/" + pid + "/fd/" + fd.Name())
		if err == nil && inodes[link] {
			return true
		}
	}
	return false
}

// listeningInodes returns the sockets ("socket:[inode]") listening on port
// in this network namespace.
func listeningInodes(port int) map[string]bool {
	want := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// local_address rem_address st ... inode (field 9)
			if len(fs) > 9 && strings.HasSuffix(fs[1], want) && fs[3] == "0A" {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	return inodes
}

// dbCPU is the CPU time of the scratch database's live backends plus that of
// the server's children that ended (the postmaster's cutime and cstime): a
// backend that exits during a measure (a pool closing an idle connection)
// takes its CPU time with it, which would make a difference of backendCPU
// too small, even negative. Children of other databases that end meanwhile
// count too: it errs on the high side.
func (s *scaleRun) dbCPU() time.Duration {
	cpu := backendCPU(s.f.db)
	if s.postmaster == 0 {
		return cpu
	}
	if f := statFields(s.postmaster); len(f) > 14 {
		u, _ := strconv.ParseInt(f[13], 10, 64)
		st, _ := strconv.ParseInt(f[14], 10, 64)
		cpu += time.Duration(u+st) * time.Second / clockTick
	}
	return cpu
}

// parentPID is a process's parent (0 if unknown).
func parentPID(pid int) int {
	f := statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// statFields are the fields of /proc/<pid>/stat after the command name:
// the state is [0], the parent [1], utime and stime [11] and [12], the
// ended children's cutime and cstime [13] and [14].
func statFields(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
