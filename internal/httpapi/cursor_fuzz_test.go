package httpapi

import (
	"errors"
	"testing"

	"github.com/google/uuid"
)

// FuzzCursors: a pagination cursor opens only on the listing it was signed
// for, and only as this server wrote it — any other string, however close,
// is invalid_cursor (a 400); whatever opens signs back to the same text.
// The seed corpus is in testdata/fuzz/FuzzCursors.
func FuzzCursors(f *testing.F) {
	cs, err := NewCursors([]byte("a fuzzing secret of at least 32 bytes"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, scope, cursor string, raw []byte) {
		id, err := cs.Open(scope, cursor)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("%q: error of another kind: %v", cursor, err)
			}
			if p, logged := problemOf(err); p.Status != 400 || p.Code != "invalid_cursor" || logged {
				t.Fatalf("%q: answered %d %s", cursor, p.Status, p.Code)
			}
		} else if back := cs.Sign(scope, id); back != cursor {
			t.Fatalf("%q opened to %s, which signs as %q", cursor, id, back)
		}

		// A cursor made here opens on its scope only.
		var mine uuid.UUID
		copy(mine[:], raw)
		c := cs.Sign(scope, mine)
		if got, err := cs.Open(scope, c); err != nil || got != mine {
			t.Fatalf("own cursor %q: %v %s", c, err, got)
		}
		if _, err := cs.Open(scope+"\x00", c); err == nil {
			t.Fatalf("cursor %q opened on another scope", c)
		}
	})
}
