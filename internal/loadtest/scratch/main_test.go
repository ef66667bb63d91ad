package scratch_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine a test starts (workers, samplers, pools, a PgBouncer's
// waiter) has ended when it returns.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
