package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/cli"
	"github.com/publicdigit/publicdigit/internal/dbtest"
)

// run executes tenantctl in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDBInitIsIdempotent(t *testing.T) {
	dbtest.SetEnv(t)
	dbtest.Landlord(t)
	code, out, errOut := run(t, "db", "init")
	require.Equal(t, cli.ExitOK, code, errOut)
	assert.Equal(t, "landlord: up to date\n", out)

	code, out, _ = run(t, "db", "init", "--dry-run")
	require.Equal(t, cli.ExitOK, code)
	assert.Equal(t, "landlord: up to date\n", out)
}

func TestDBStatus(t *testing.T) {
	dbtest.SetEnv(t)
	code, out, errOut := run(t, "db", "status", "--json")
	require.Equal(t, cli.ExitOK, code, errOut)
	var rows []struct {
		Name      string `json:"name"`
		Port      int    `json:"port"`
		Database  string `json:"database"`
		Reachable bool   `json:"reachable"`
		Server    string `json:"server_version"`
		PgBouncer string `json:"pgbouncer_version"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	byName := map[string]int{}
	for i, r := range rows {
		byName[r.Name] = i
		assert.True(t, r.Reachable, r.Name)
		assert.Equal(t, "publicdigit_test", r.Database)
		assert.True(t, strings.HasPrefix(r.Server, "15"), r.Server)
	}
	assert.Contains(t, rows[byName["landlord"]].PgBouncer, "PgBouncer 1.", "landlord goes through PgBouncer")
	assert.Empty(t, rows[byName["admin"]].PgBouncer, "admin is direct")

	code, out, _ = run(t, "db", "status")
	require.Equal(t, cli.ExitOK, code)
	assert.Contains(t, out, "REACHABLE")
}

func TestUnreachableDatabaseIsOneClearLine(t *testing.T) {
	c := dbtest.SetEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	ln.Close() // nothing listens there now
	t.Setenv("PD_ADMIN__URL", dbtest.WithPort(t, c.Admin.URL, itoa(port)))

	code, _, errOut := run(t, "db", "init")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
	assert.Contains(t, errOut, "admin connection")
	assert.Contains(t, errOut, "connection refused")

	code, out, errOut := run(t, "db", "status")
	assert.Equal(t, cli.ExitFailure, code)
	assert.Contains(t, out, "no: ")
	assert.Contains(t, errOut, "1 of 4 connections unreachable")
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"db"},
		{"db", "nope"},
		{"db", "init", "extra"},
		{"db", "init", "--no-such-flag"},
	} {
		code, _, errOut := run(t, args...)
		assert.Equal(t, cli.ExitUsage, code, "%v: %s", args, errOut)
	}
}

func TestInvalidConfigExitsTwo(t *testing.T) {
	t.Setenv("PD_POOL__MAX_CONNS", "-3")
	code, _, errOut := run(t, "db", "status")
	assert.Equal(t, cli.ExitUsage, code)
	assert.Contains(t, errOut, "pool.max_conns")
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range cli.CommandPaths() {
		code, out, errOut := run(t, append(args, "--help")...)
		assert.Equal(t, cli.ExitOK, code, "%v: %s", args, errOut)
		assert.Contains(t, out, "Usage:", "%v", args)
	}
}
