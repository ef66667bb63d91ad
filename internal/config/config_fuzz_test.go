package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/publicdigit/publicdigit/internal/config"
)

// FuzzLoad loads arbitrary YAML files and flag values: Load either returns
// a configuration that passes Validate, with every cluster's PgBouncer
// version set, or an error that says "config: …" — never a panic, and never
// a partial configuration. The seed corpus is in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml []byte, flagName, flagValue string) {
		path := filepath.Join(dir, "publicdigit.yaml")
		if err := os.WriteFile(path, yaml, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := pflag.NewFlagSet("fuzz", pflag.ContinueOnError)
		config.Flags(fs)
		args := []string{"--config=" + path}
		if fs.Lookup(flagName) != nil && flagName != "config" {
			args = append(args, "--"+flagName+"="+flagValue)
		}
		if err := fs.Parse(args); err != nil {
			return // pflag refused the value: Load never sees it
		}
		c, err := config.Load(fs)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error without its prefix: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned an invalid configuration: %v", err)
		}
		for name, cl := range c.Clusters {
			if cl.PgBouncer == "" {
				t.Fatalf("cluster %s without a PgBouncer version", name)
			}
		}
		if _, ok := c.Clusters[c.DefaultCluster]; !ok {
			t.Fatalf("default cluster %q is not configured", c.DefaultCluster)
		}
	})
}
