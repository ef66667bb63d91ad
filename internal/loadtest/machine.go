package loadtest

import (
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/publicdigit/publicdigit/internal/loadtest/report"
)

// machine describes this machine from /proc and /etc/os-release.
func machine() report.Machine {
	m := report.Machine{Cores: runtime.NumCPU(), LoadStart: loadAverage()}
	m.CPU = field(readFile("/proc/cpuinfo"), "model name", ":")
	if kb, err := strconv.Atoi(strings.TrimSuffix(field(readFile("/proc/meminfo"), "MemTotal", ":"), " kB")); err == nil {
		m.MemoryMB = kb / 1024
	}
	m.OS = strings.Trim(field(readFile("/etc/os-release"), "PRETTY_NAME", "="), `"`)
	m.Kernel = strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))
	return m
}

// loadAverage is the 1, 5 and 15 minute load average.
func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// field returns the value of the first "key<sep>value" line.
func field(text, key, sep string) string {
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(line, sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// urlUser is the user-info part of a URL.
func urlUser(user, password string) string { return url.UserPassword(user, password).String() }
