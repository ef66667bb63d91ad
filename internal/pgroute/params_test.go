package pgroute_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/publicdigit/publicdigit/internal/dbtest"
	"github.com/publicdigit/publicdigit/internal/pgroute"
)

// The tenant pools send statements with the simple protocol (client-side
// interpolation by pgx). This test round-trips every parameter type the code
// uses, plus hostile strings, through both exec modes and compares with what
// PostgreSQL stored, read back over the extended protocol.
func TestParameterTypesRoundTrip(t *testing.T) {
	tenants := newTenants(t, 1)
	tt := tenants[0]
	ctx := context.Background()
	admin := dbtest.AdminPool(t)

	hostile := []string{
		"plain", "O'Brien", `back\slash`, `'; DROP TABLE members; --`, "dollar $1 $$ $tag$", "-- comment", "/* c */",
		"new\nline\ttab", "ünïcödé", "emoji 🎉", "\\x00 not a nul", "''", `"`, "NULL", "",
	}
	when := time.Date(2026, 11, 26, 19, 1, 2, 123456000, time.FixedZone("x", -5*3600-30*60))

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(strings.ReplaceAll(mode.String(), " ", "_"), func(t *testing.T) {
			r := newRouter(t, routerConfig(t, dbtest.Bouncer), pgroute.Options{ExecMode: mode})
			for _, s := range hostile {
				id := uuid.New()
				email := s + "@" + mode.String() + ".test"
				require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
					b.Queue(`INSERT INTO members (id, tenant_id, full_name, email, geo_unit_id, joined_at) VALUES ($1, $2, $3, $4, $5, $6)`,
						id, tt.id, s, &email, int64(-42), when)
					return nil
				}), "%q", s)
				var name, gotEmail string
				var geo int64
				var joined time.Time
				require.NoError(t, admin.QueryRow(ctx, `SELECT full_name, email, geo_unit_id, joined_at FROM `+
					pgx.Identifier{tt.slug.SchemaName(), "members"}.Sanitize()+` WHERE id = $1`, id).Scan(&name, &gotEmail, &geo, &joined))
				assert.Equal(t, s, name)
				assert.Equal(t, email, gotEmail)
				assert.Equal(t, int64(-42), geo)
				assert.True(t, when.Equal(joined), "%v != %v", when, joined)
			}

			var (
				gotUUID              uuid.UUID
				gotMin, gotMax, diff int64
				gotF                 float64
				gotBool              bool
				gotNull              *string
				gotArr               []string
				gotBytes             []byte
				gotJSON              string
				gotTime              time.Time
			)
			wantUUID := uuid.New()
			arr := []string{"a,b", `c"d`, "NULL", "", "é"}
			bytes := []byte{0, 1, 2, 0xff, '\'', '\\'}
			require.NoError(t, r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
				b.Queue(`SELECT $1::uuid, $2::bigint, $3::bigint, 1-$4, $5::float8, $6::bool, $7::text, $8::text[], $9::bytea, ($10::jsonb)->>'k', $11::timestamptz`,
					wantUUID, int64(math.MinInt64), int64(math.MaxInt64), -1, 1e-300, true, (*string)(nil), arr, bytes, `{"k": "v'\"\\"}`, when).
					QueryRow(func(row pgx.Row) error {
						return row.Scan(&gotUUID, &gotMin, &gotMax, &diff, &gotF, &gotBool, &gotNull, &gotArr, &gotBytes, &gotJSON, &gotTime)
					})
				return nil
			}))
			assert.Equal(t, wantUUID, gotUUID)
			assert.Equal(t, int64(math.MinInt64), gotMin)
			assert.Equal(t, int64(math.MaxInt64), gotMax)
			assert.Equal(t, int64(2), diff, "1-(-1): a negative number must not start a -- comment")
			assert.Equal(t, 1e-300, gotF)
			assert.True(t, gotBool)
			assert.Nil(t, gotNull)
			assert.Equal(t, arr, gotArr)
			assert.Equal(t, bytes, gotBytes)
			assert.Equal(t, `v'"\`, gotJSON)
			assert.True(t, when.Equal(gotTime))

			// A NUL byte cannot be stored in text and would cut a simple-protocol
			// message short: refused before anything is sent.
			err := r.Do(ctx, tt.slug, func(b *pgroute.Batch) error {
				b.Queue(`INSERT INTO members (tenant_id, full_name) VALUES ($1, $2)`, tt.id, "a\x00b")
				return nil
			})
			assert.ErrorIs(t, err, pgroute.ErrInvalidData)
		})
	}
}
