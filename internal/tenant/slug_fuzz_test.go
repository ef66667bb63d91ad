package tenant_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"unicode/utf8"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// identifier is a PostgreSQL identifier that needs no quoting beyond the
// usual: lower case, at most 63 bytes.
var identifier = regexp.MustCompile(`^tenant_[a-z][a-z0-9_]*$`)

// FuzzParseSlug: ParseSlug accepts exactly ^[a-z][a-z0-9_]*$ up to
// MaxSlugLen bytes (reserved names aside), nothing trimmed or folded; an
// accepted slug round-trips through text and JSON and names a schema, role
// and database within PostgreSQL's 63 bytes; a refusal wraps ErrInvalidSlug
// with a short message. The seed corpus is in testdata/fuzz/FuzzParseSlug.
func FuzzParseSlug(f *testing.F) {
	shape := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	f.Fuzz(func(t *testing.T, s string) {
		slug, err := tenant.ParseSlug(s)
		if err != nil {
			if !errors.Is(err, tenant.ErrInvalidSlug) {
				t.Fatalf("%q: error of another kind: %v", s, err)
			}
			// The text quotes at most MaxSlugLen bytes of the input, each
			// escaped in at most 4 characters, whatever its length.
			if len(err.Error()) > 4*tenant.MaxSlugLen+120 || !utf8.ValidString(err.Error()) {
				t.Fatalf("%q: error text too long or not UTF-8: %q", s, err.Error())
			}
			if shape.MatchString(s) && len(s) <= tenant.MaxSlugLen {
				// Only a reserved name of the right shape may be refused.
				var back tenant.Slug
				if json.Unmarshal([]byte(`"`+s+`"`), &back) == nil {
					t.Fatalf("%q: JSON took what ParseSlug refused", s)
				}
			}
			return
		}
		if !shape.MatchString(s) || len(s) > tenant.MaxSlugLen {
			t.Fatalf("%q: accepted", s)
		}
		if slug.String() != s || slug.IsZero() {
			t.Fatalf("%q: became %q", s, slug.String())
		}
		for _, name := range []string{slug.SchemaName(), slug.RoleName(), slug.DatabaseName()} {
			if len(name) > 63 || !identifier.MatchString(name) {
				t.Fatalf("%q: name %q", s, name)
			}
		}
		text, err := slug.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back tenant.Slug
		if err := back.UnmarshalText(text); err != nil || back != slug {
			t.Fatalf("%q: text round trip: %v %q", s, err, back.String())
		}
		raw, err := json.Marshal(slug)
		if err != nil {
			t.Fatal(err)
		}
		back = tenant.Slug{}
		if err := json.Unmarshal(raw, &back); err != nil || back != slug {
			t.Fatalf("%q: JSON round trip: %v %q", s, err, back.String())
		}
	})
}
