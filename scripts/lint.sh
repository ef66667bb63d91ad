#!/usr/bin/env bash
# Checks that `make test` runs before the tests: formatting, module tidiness,
# vet, and the catalog's ownership of the tenant table. Each failure names
# what to run or where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
GO="${GO:-go}"
fail=0

unformatted="$(gofmt -l $(git ls-files '*.go'))"
if [ -n "$unformatted" ]; then
  echo "lint: not gofmt-clean (run gofmt -w):" >&2
  echo "$unformatted" | sed 's/^/  /' >&2
  fail=1
fi

if ! tidy="$($GO mod tidy -diff 2>&1)"; then
  echo "lint: go mod tidy would change go.mod/go.sum (run go mod tidy):" >&2
  echo "$tidy" | head -20 | sed 's/^/  /' >&2
  fail=1
fi

# One owner per table: only internal/catalog (with its tests and its test
# helpers) speaks SQL on landlord.tenants. Schema files, docs and atlas.hcl
# may name it; Go code elsewhere goes through the catalog.
owners="$(git grep -n -E 'landlord\.tenants\b' -- '*.go' ':!internal/catalog/**' || true)"
if [ -n "$owners" ]; then
  echo "lint: only internal/catalog may name landlord.tenants; use a catalog function instead:" >&2
  echo "$owners" | sed 's/^/  /' >&2
  fail=1
fi

$GO vet ./... || fail=1
exit $fail
