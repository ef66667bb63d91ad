package config_test

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/config"
)

// The commented example in deploy/ must load and equal the defaults, so it
// stays a true reference.
func TestExampleConfigMatchesDefaults(t *testing.T) {
	t.Setenv("PD_CONFIG", "../../deploy/publicdigit.example.yaml")
	c, err := config.Load(nil)
	require.NoError(t, err)
	assert.True(t, reflect.DeepEqual(config.Defaults(), c), "example differs from defaults:\n%+v\n%+v", config.Defaults(), c)
}
