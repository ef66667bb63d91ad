package httpapi

import (
	"github.com/publicdigit/publicdigit/internal/apperr"

	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// ErrInvalidCursor is returned for a pagination cursor that this server did
// not issue for the same tenant, listing and filters: forged, tampered with,
// truncated, or replayed on another tenant or filter.
var ErrInvalidCursor = apperr.New("invalid_cursor", "invalid pagination cursor")

// cursorVersion starts every cursor, so the format can change later.
const cursorVersion = 1

// cursorMACLen is the part of the HMAC-SHA256 kept in a cursor (128 bits).
const cursorMACLen = 16

// cursorLen is the decoded length of a cursor: version, last id, MAC.
const cursorLen = 1 + 16 + cursorMACLen

// Cursors signs and opens keyset pagination cursors. A cursor is
// base64url(version ‖ last id ‖ HMAC-SHA256(key, version ‖ scope ‖ last id)),
// where scope names the listing, the tenant and the filters: a cursor opens
// only on the listing it was made for.
type Cursors struct {
	key []byte
}

// NewCursors returns a signer with the given secret. An empty secret makes a
// random one: cursors then survive neither a restart nor a hop to another
// server process (the caller should warn).
func NewCursors(secret []byte) (*Cursors, error) {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("cursor secret: %w", err)
		}
	}
	return &Cursors{key: append([]byte(nil), secret...)}, nil
}

// cursorScope names a listing: kind, tenant and filters, in a fixed order,
// each part length-prefixed so that no two different scopes render the same.
func cursorScope(kind, tenant string, filters ...string) string {
	var b strings.Builder
	for _, part := range append([]string{kind, tenant}, filters...) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		b.Write(n[:])
		b.WriteString(part)
	}
	return b.String()
}

func (cs *Cursors) mac(scope string, id uuid.UUID) []byte {
	h := hmac.New(sha256.New, cs.key)
	h.Write([]byte{cursorVersion})
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write(id[:])
	return h.Sum(nil)[:cursorMACLen]
}

// Sign returns the cursor that continues the listing scope after id.
func (cs *Cursors) Sign(scope string, id uuid.UUID) string {
	var raw [cursorLen]byte
	raw[0] = cursorVersion
	copy(raw[1:17], id[:])
	copy(raw[17:], cs.mac(scope, id))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// Open checks a cursor against the listing scope and returns the id it
// continues after; any mismatch is ErrInvalidCursor.
func (cs *Cursors) Open(scope, cursor string) (uuid.UUID, error) {
	if len(cursor) != base64.RawURLEncoding.EncodedLen(cursorLen) {
		return uuid.Nil, ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(raw) != cursorLen || raw[0] != cursorVersion {
		return uuid.Nil, ErrInvalidCursor
	}
	var id uuid.UUID
	copy(id[:], raw[1:17])
	if !hmac.Equal(raw[17:], cs.mac(scope, id)) {
		return uuid.Nil, ErrInvalidCursor
	}
	return id, nil
}
