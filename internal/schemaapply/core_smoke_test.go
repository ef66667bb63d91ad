package schemaapply_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/schemaapply"
	hcl "github.com/publicdigit/publicdigit/schema"
)

func TestTenantCoreAppliesAndConverges(t *testing.T) {
	t.Parallel()
	db := dbtest.AdminDB(t)
	name := dbtest.Name("tenant_smoke")
	t.Cleanup(func() { dbtest.DropSchema(t, db, name) })
	target := schemaapply.Target{Schema: name, HCL: [][]byte{hcl.TenantCore()}, Vars: map[string]string{"tenant": name}}
	first, err := schemaapply.Apply(context.Background(), db, target, schemaapply.Options{})
	require.NoError(t, err)
	assert.NotEmpty(t, first.Statements)
	second, err := schemaapply.Apply(context.Background(), db, target, schemaapply.Options{})
	require.NoError(t, err)
	assert.Empty(t, second.Statements)
}
