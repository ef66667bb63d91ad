package pgroute_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (pools,
// listeners, background loops must all stop).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
