# publicdigit — `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
GO ?= go
GOFLAGS ?=
export PD_TEST_DB ?= publicdigit_test
MOVE_CARDS ?= 100000
# The local servers' development passwords, written by deploy/local/db-up.sh;
# the built-in configuration carries none.
export PGPASSFILE ?= $(CURDIR)/.data/pgpass

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: db-up
db-up: ## start local PostgreSQL + PgBouncer (installs packages, creates roles and databases)
	@./deploy/local/db-up.sh

.PHONY: db-up-b
db-up-b: ## start a second local PostgreSQL + PgBouncer (cluster "b", ports 15433/16433) for multi-cluster work
	@PD_INSTANCE=b ./deploy/local/db-up.sh

.PHONY: db-down
db-down: ## stop exactly the processes in the local pid files (every instance)
	@./deploy/local/db-down.sh
	@PD_INSTANCE=b ./deploy/local/db-down.sh
	@PD_INSTANCE=chaos ./deploy/local/db-down.sh

.PHONY: db-reset
db-reset: ## stop, delete the local data folder, start afresh (cluster b: PD_INSTANCE=b deploy/local/db-reset.sh)
	@./deploy/local/db-reset.sh

.PHONY: build
build: ## build bin/publicdigit and bin/tenantctl
	$(GO) build $(GOFLAGS) -o bin/ ./cmd/...

.PHONY: db-init
db-init: db-up build ## extensions + landlord catalog on the platform database
	@./bin/tenantctl db init

.PHONY: run
run: db-init ## start the databases, prepare the catalog, seed the demo, serve the API on 127.0.0.1:8080
	@./bin/tenantctl seed demo --token-file .data/demo-token
	@echo "platform token for the README's curl examples: export TOKEN=\$$(cat .data/demo-token)"
	@./bin/publicdigit

.PHONY: vet
vet: ## go vet
	$(GO) vet ./...

.PHONY: lint
lint: ## gofmt, go mod tidy, go vet, and only internal/catalog names landlord.tenants (make test runs it)
	@GO=$(GO) ./scripts/lint.sh

.PHONY: test
test: lint db-up db-up-b openapi-lint openapi-client deploy-tools ## run every test (race detector) against the real PostgreSQL and PgBouncer
	$(GO) test -race -count=1 -timeout 20m ./...

# Redocly CLI, pinned by tools/redocly/package-lock.json; npm ci installs it
# (needs the npm registry) the first time or after the lock file changes.
REDOCLY := tools/redocly/node_modules/.bin/redocly
$(REDOCLY): tools/redocly/package.json tools/redocly/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "make: npm is missing: install Node.js 20.19+ and npm (.ci/run checks)" >&2; exit 1; }
	cd tools/redocly && npm ci --no-audit --no-fund
	@touch $@

.PHONY: openapi-lint
openapi-lint: $(REDOCLY) ## lint internal/httpapi/openapi.yaml with Redocly's recommended rules (warnings fail too)
	@REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true $(REDOCLY) lint \
		--config tools/redocly/redocly.yaml --format stylish internal/httpapi/openapi.yaml 2>&1 | grep -v '[║╔╚]'; \
		exit $${PIPESTATUS[0]}

# The generated API client; oapi-codegen is pinned by tools/oapi-codegen/go.mod.
APICLIENT := internal/apiclient/client.gen.go

.PHONY: openapi-client
openapi-client: ## regenerate internal/apiclient from openapi.yaml; fails if the checked-in copy was out of date
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd tools/oapi-codegen && $(GO) tool oapi-codegen -config ../../internal/apiclient/oapi-codegen.yaml \
		-o "$$tmp/client.gen.go" ../../internal/httpapi/openapi.yaml) && \
	if cmp -s "$$tmp/client.gen.go" $(APICLIENT); then echo "$(APICLIENT) is up to date"; \
	else cp "$$tmp/client.gen.go" $(APICLIENT); \
		echo "make: $(APICLIENT) was out of date with openapi.yaml: regenerated it, review and commit" >&2; exit 1; fi

# What internal/deploycheck runs besides PostgreSQL and PgBouncer: docker-compose
# (Debian's package; `config` needs no Docker engine) and systemd-analyze.
.PHONY: deploy-tools
deploy-tools: ## install docker-compose and systemd-analyze (apt-get) for the deploy checks when missing
	@missing=(); command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose); \
	command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd); \
	if [ $${#missing[@]} -gt 0 ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make: missing $${missing[*]}; run: sudo apt-get install -y $${missing[*]}" >&2; exit 1; fi; \
		echo "make: installing $${missing[*]} with apt-get"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$${missing[@]}" >/dev/null; \
	fi

# Each fuzz target with its package; make test runs their seed corpora
# (testdata/fuzz/…) as ordinary tests.
FUZZ_TARGETS := FuzzParseSlug:./internal/tenant FuzzCursors:./internal/httpapi FuzzDecodeJSON:./internal/httpapi \
	FuzzTenantAPIBodies:./internal/httpapi FuzzLoad:./internal/config FuzzGuard:./internal/pgroute
FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: db-up ## explore every fuzz target for FUZZTIME each (default 1m; ~8 min in all); new failures land in testdata/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t%%:*} ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$${t%%:*}$$" -fuzztime=$(FUZZTIME) "$${t#*:}"; \
	done

.PHONY: bench-scope
bench-scope: db-up ## tenant binding overhead: plain vs scoped vs naive, c=1/8, direct/PgBouncer (~2 min)
	$(GO) run ./cmd/pdbench scope

.PHONY: bench-fleet
bench-fleet: db-up ## 1,000 tenant schemas: fleet no-op check, additive rollout to all, naive inspect loop (~3 min)
	$(GO) run ./cmd/pdbench fleet

.PHONY: bench-api
bench-api: db-up ## tenant API at c=32: GET card, POST issue card, POST ballot; whole stack vs bare Fiber handler, 9 interleaved rounds (~2 min)
	$(GO) run ./cmd/pdbench api

.PHONY: bench-provision
bench-provision: db-init ## 200 tenants through the API: cold (schema apply) vs warm pool, p50/p95 (~1 min)
	$(GO) run ./cmd/pdbench provision

.PHONY: bench-scale
bench-scale: db-up ## 10,000 tenants on one server, each measure vs 100 (hours on a busy 2-core box; smaller: make bench-scale SCALE_ARGS='-n 300')
	$(GO) run ./cmd/pdbench scale $(SCALE_ARGS)

.PHONY: bench-export
bench-export: db-up ## tenant archive of 100k rows: export to a file, import as another slug, vs raw COPY (~1 min)
	$(GO) run ./cmd/pdbench export

.PHONY: bench-move
bench-move: db-up ## online moves of a 100k-card tenant, logical vs lock mode: write pause, rows/s (~2-3 min; MOVE_CARDS=100000,1000000 adds 1M: ~9-12 min)
	$(GO) run ./cmd/pdbench move -cards $(MOVE_CARDS)

.PHONY: chaos
chaos: ## faults under load on the "chaos" instance (15434/16434): restarts, kill -9, stalls; checks every acknowledged write (~2 min)
	$(GO) run ./cmd/pdchaos chaos

.PHONY: soak
soak: ## steady load with a fault a minute on the "chaos" instance; server memory and goroutines at start and end (~11 min)
	$(GO) run ./cmd/pdchaos soak

TENANTS ?= 10,100,1000
REPORT ?= docs/loadtest/report.html
SCREENSHOT ?= reports/loadtest-screenshot.png

.PHONY: loadtest-quick
loadtest-quick: db-up ## isolation modes side by side, quick: 10 and 100 tenants, short cells (~3 min); the report folder is the last line
	@$(GO) build $(GOFLAGS) -o bin/pdload ./cmd/pdload
	@./bin/pdload -quick $(LOADTEST_FLAGS)

.PHONY: loadtest
loadtest: db-up ## isolation modes side by side, full matrix: 10, 100, 1,000 tenants (TENANTS=10,100,1000,10000 adds 10,000; ~40 min)
	@$(GO) build $(GOFLAGS) -o bin/pdload ./cmd/pdload
	@./bin/pdload -tenants $(TENANTS) $(LOADTEST_FLAGS)

.PHONY: loadtest-screenshot
loadtest-screenshot: ## headless Chromium opens REPORT (default docs/loadtest/report.html) offline, screenshots it, checks it is not blank
	@$(GO) build $(GOFLAGS) -o bin/pdload ./cmd/pdload
	@./bin/pdload screenshot $(REPORT) $(SCREENSHOT)
