package tenant_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

func TestParseSlugAccepts(t *testing.T) {
	for _, s := range []string{"a", "acme", "nrna", "rotary", "acme_2", "a1", strings.Repeat("x", tenant.MaxSlugLen)} {
		slug, err := tenant.ParseSlug(s)
		require.NoError(t, err, s)
		assert.Equal(t, s, slug.String())
		assert.Equal(t, "tenant_"+s, slug.SchemaName())
		assert.Equal(t, "tenant_"+s, slug.RoleName())
		assert.LessOrEqual(t, len(slug.SchemaName()), 63)
	}
}

func TestParseSlugRefuses(t *testing.T) {
	bad := []string{
		"", " acme", "acme ", "Acme", "ACME", "1acme", "_acme", "ac-me", "ac.me", "ac;me", "acme'", `ac"me`,
		"ac me", "acmé", "ас", "a\x00b", "a\nb", "acme;drop table x", "café", "ﬁ",
		strings.Repeat("x", tenant.MaxSlugLen+1), strings.Repeat("x", 64),
		"api", "public", "landlord", "healthz", "pgbouncer", "template1", "information_schema",
	}
	for _, s := range bad {
		_, err := tenant.ParseSlug(s)
		require.Error(t, err, "%q", s)
		assert.True(t, errors.Is(err, tenant.ErrInvalidSlug), "%q", s)
	}
}

func TestSlugJSON(t *testing.T) {
	var v struct{ Slug tenant.Slug }
	require.NoError(t, json.Unmarshal([]byte(`{"Slug":"acme"}`), &v))
	assert.Equal(t, "acme", v.Slug.String())
	require.Error(t, json.Unmarshal([]byte(`{"Slug":"Bad"}`), &v))
	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"Slug":"acme"}`, string(b))
}
