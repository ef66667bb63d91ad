package schemaapply_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
)

func TestApplyTenantFreshThenNoStatement(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	ctx := context.Background()
	tt := dbtest.TenantRow(t, "fresh")
	spec := tt.Spec("pd_app", "modules/events.hcl", "modules/donations.hcl")

	first, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, first.Statements)
	assert.NotEmpty(t, first.Fingerprint)
	for _, s := range first.Statements {
		t.Log(s)
	}

	second, err := schemaapply.ApplyTenant(ctx, db, spec, schemaapply.Options{})
	require.NoError(t, err)
	assert.Empty(t, second.Statements, "a converged tenant runs no statement")
	assert.Equal(t, first.Fingerprint, second.Fingerprint)
	assert.Equal(t, first.Hash, second.Hash)
}
