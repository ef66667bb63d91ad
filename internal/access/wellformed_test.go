package access

import (
	"encoding/base64"
	"math/rand/v2"
	"strings"
	"testing"
)

// decodesAsSecret is the definition wellFormed checks in place: the prefix
// and the unpadded base64url of secretBytes bytes.
func decodesAsSecret(s string) bool {
	if len(s) != secretLen || !strings.HasPrefix(s, SecretPrefix) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(s[len(SecretPrefix):])
	return err == nil && len(b) == secretBytes
}

func TestWellFormedAgreesWithDecoding(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.\x00\n é"
	accepted := 0
	for i := 0; i < 20000; i++ {
		s, err := newSecret()
		if err != nil {
			t.Fatal(err)
		}
		b := []byte(s)
		switch i % 4 { // mutate most of them: a character, the length, the prefix
		case 1:
			b[len(SecretPrefix)+r.IntN(len(b)-len(SecretPrefix))] = chars[r.IntN(len(chars))]
		case 2:
			b = b[:r.IntN(len(b))]
		case 3:
			b[r.IntN(len(b))] = chars[r.IntN(len(chars))]
		}
		if got, want := wellFormed(string(b)), decodesAsSecret(string(b)); got != want {
			t.Fatalf("wellFormed(%q) = %v, decoding says %v", b, got, want)
		} else if got {
			accepted++
		}
	}
	if accepted < 5000 || accepted == 20000 {
		t.Fatalf("accepted %d of 20000: the mutations did not exercise both answers", accepted)
	}
}
