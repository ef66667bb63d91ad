package geography_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/geography"
)

// stores returns an importer on the admin pool and a reader on the
// application role through PgBouncer (empty search_path), and removes the
// test's units (codes starting with prefix) at cleanup.
func stores(t *testing.T, prefix string) (imp, read *geography.Store) {
	t.Helper()
	dbtest.Landlord(t)
	admin := dbtest.AdminPool(t)
	t.Cleanup(func() {
		_, err := admin.Exec(context.Background(), `DELETE FROM landlord.geo_administrative_units WHERE starts_with(code, $1)`, prefix)
		assert.NoError(t, err)
	})
	return geography.New(admin), geography.New(dbtest.AppPool(t, dbtest.Bouncer, 2))
}

func csvOf(p string, lines ...string) *strings.Reader {
	var b strings.Builder
	b.WriteString("code,name,level,parent_code\n")
	for _, l := range lines {
		b.WriteString(strings.ReplaceAll(l, "$", p) + "\n")
	}
	return strings.NewReader(b.String())
}

func codes(us []geography.Unit) []string {
	out := make([]string, len(us))
	for i, u := range us {
		out[i] = u.Code
	}
	return out
}

func TestImportAndTree(t *testing.T) {
	t.Parallel()
	p := dbtest.Name("G") + "-"
	imp, read := stores(t, p)
	ctx := context.Background()

	// Children before parents: the importer orders them.
	res, err := imp.Import(ctx, csvOf(p,
		"$KTM-1,Ward 1,ward,$KTM",
		"$KTM,Kathmandu Metropolitan City,municipality,$KTMD",
		"$NP,Nepal,country,",
		"$BAG,Bagmati Province,province,$NP",
		"$KTMD,Kathmandu District,district,$BAG",
		"$KTM-2,Ward 2,ward,$KTM",
		"$LAL,Lalitpur District,district,$BAG",
	))
	require.NoError(t, err)
	assert.Equal(t, geography.ImportResult{Created: 7}, res)

	// Find the ward through the roots.
	var np geography.Unit
	var after int64
	for {
		page, err := read.List(ctx, geography.ListOptions{After: after, Limit: 1000})
		require.NoError(t, err)
		for _, u := range page.Units {
			if u.Code == p+"NP" {
				np = u
			}
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	require.NotZero(t, np.ID, "the root is listed")
	assert.Nil(t, np.ParentID)
	assert.Equal(t, 1, np.Depth)
	assert.Equal(t, fmt.Sprint(np.ID), np.Path)

	kids, err := read.List(ctx, geography.ListOptions{Parent: &np.ID})
	require.NoError(t, err)
	assert.Equal(t, []string{p + "BAG"}, codes(kids.Units))

	d, err := read.Detail(ctx, np.ID, 100)
	require.NoError(t, err)
	assert.Empty(t, d.Ancestors)
	assert.Len(t, d.Descendants, 6)
	assert.False(t, d.DescendantsTruncated)

	var ward geography.Unit
	for _, u := range d.Descendants {
		if u.Code == p+"KTM-2" {
			ward = u
		}
	}
	wd, err := read.Detail(ctx, ward.ID, 10)
	require.NoError(t, err)
	assert.Equal(t, []string{p + "NP", p + "BAG", p + "KTMD", p + "KTM"}, codes(wd.Ancestors), "root first")
	assert.Empty(t, wd.Descendants)
	assert.Equal(t, 5, wd.Depth)
	assert.True(t, strings.HasPrefix(wd.Path, np.Path+"."))

	bag := kids.Units[0]
	bd, err := read.Detail(ctx, bag.ID, 2)
	require.NoError(t, err)
	assert.Len(t, bd.Descendants, 2)
	assert.True(t, bd.DescendantsTruncated)

	_, err = read.Detail(ctx, 1<<60, 10)
	assert.ErrorIs(t, err, geography.ErrUnitNotFound)
	_, err = read.Get(ctx, 1<<60)
	assert.ErrorIs(t, err, geography.ErrUnitNotFound)
	missing := int64(1 << 60)
	_, err = read.List(ctx, geography.ListOptions{Parent: &missing})
	assert.ErrorIs(t, err, geography.ErrUnitNotFound)
	_, err = read.List(ctx, geography.ListOptions{Limit: 5000})
	assert.ErrorIs(t, err, geography.ErrInvalidQuery)
	ok, err := read.Exists(ctx, ward.ID)
	require.NoError(t, err)
	assert.True(t, ok)

	// Re-import: idempotent; a renamed unit is updated; a new child is added under an existing parent.
	res, err = imp.Import(ctx, csvOf(p,
		"$NP,Nepal,country,",
		"$BAG,Bagmati,province,$NP",
		"$KTM-3,Ward 3,ward,$KTM",
	))
	require.NoError(t, err)
	assert.Equal(t, geography.ImportResult{Created: 1, Updated: 1, Unchanged: 1}, res)
	got, err := read.Get(ctx, bag.ID)
	require.NoError(t, err)
	assert.Equal(t, "Bagmati", got.Name)
}

func TestImportRefusesBadFilesWithoutChanges(t *testing.T) {
	t.Parallel()
	p := dbtest.Name("B") + "-"
	imp, read := stores(t, p)
	ctx := context.Background()
	_, err := imp.Import(ctx, csvOf(p, "$ROOT,Root,country,"))
	require.NoError(t, err)

	cases := map[string]struct {
		file string
		want string
	}{
		"empty":          {"", "empty"},
		"no rows":        {"code,name,level\n", "no units"},
		"unknown column": {"code,name,level,colour\nX,x,ward\n", `unknown column "colour"`},
		"missing column": {"code,name\nX,x\n", "missing column level"},
		"bad code":       {"code,name,level\n'; DROP TABLE x,x,ward\n", "line 2: code"},
		"bad level":      {"code,name,level\n" + p + "A,x,Ward Level\n", "line 2: level"},
		"empty name":     {"code,name,level\n" + p + "A,,ward\n", "line 2: name"},
		"duplicate":      {"code,name,level\n" + p + "A,a,ward\n" + p + "A,b,ward\n", "line 3: code " + p + "A already on line 2"},
		"unknown parent": {"code,name,level,parent_code\n" + p + "A,a,ward," + p + "NOPE\n", "neither in the file nor in the catalog"},
		"cycle": {"code,name,level,parent_code\n" + p + "A,a,ward," + p + "B\n" + p + "B,b,ward," + p + "A\n",
			"parent cycle"},
		"self parent": {"code,name,level,parent_code\n" + p + "A,a,ward," + p + "A\n", "its own parent"},
		"move":        {"code,name,level,parent_code\n" + p + "X,x,country,\n" + p + "ROOT,Root,country," + p + "X\n", "moving a unit is not supported"},
		"ragged":      {"code,name,level\n" + p + "A,a\n", "wrong number of fields"},
	}
	for name, c := range cases {
		_, err := imp.Import(ctx, strings.NewReader(c.file))
		require.Error(t, err, name)
		assert.ErrorIs(t, err, geography.ErrInvalidImport, name)
		assert.Contains(t, err.Error(), c.want, name)
	}
	page, err := read.List(ctx, geography.ListOptions{Limit: 1000})
	require.NoError(t, err)
	n := 0
	for _, u := range page.Units {
		if strings.HasPrefix(u.Code, p) {
			n++
		}
	}
	assert.Equal(t, 1, n, "only the first, valid import wrote anything")
}
