package schemaapply

import (
	"context"
)

// TwinState tells whether c holds a twin, with its plan, for a desired hash,
// and whether an apply from that plan has checked its fingerprint.
func TwinState(c *Twins, hash string) (held, verified bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tw := c.m[hash]
	return tw != nil && tw.plan != nil, tw != nil && tw.verified.Load()
}

// ShiftParams is shiftParams, for tests.
var ShiftParams = shiftParams

// StampsBy is Stamps read through indexes (few) or by scans of the catalogs.
func StampsBy(ctx context.Context, q Querier, items []SchemaRole, few bool) (map[string]string, error) {
	n := 0
	if few {
		n = len(items)
	}
	all, _, err := stamps(ctx, q, items, nil, n)
	return all, err
}

// ChangedStampsBy is ChangedStamps read through indexes (few) or by scans.
func ChangedStampsBy(ctx context.Context, q Querier, items []SchemaRole, recorded []string, few bool) (map[string]string, error) {
	n := 0
	if few {
		n = len(items)
	}
	changed, _, err := checkStamps(ctx, q, items, recorded, n)
	return changed, err
}

// CheckStampsBy is checkStamps read through indexes (few) or by scans.
func CheckStampsBy(ctx context.Context, q Querier, items []SchemaRole, recorded []string, few bool) (changed, refreshed map[string]string, err error) {
	n := 0
	if few {
		n = len(items)
	}
	return checkStamps(ctx, q, items, recorded, n)
}
