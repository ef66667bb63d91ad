package httpapi

import "testing"

func TestNewRequestIDsAreValidAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100000; i++ {
		id := newRequestID()
		if len(id) != 24 || !validRequestID(id) {
			t.Fatalf("request id %q: want 24 hex digits that validRequestID accepts", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated after %d ids", id, i)
		}
		seen[id] = true
	}
}
