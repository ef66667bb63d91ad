# publicdigit — `make help` lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help
GO ?= go
GOFLAGS ?=
export PD_TEST_DB ?= publicdigit_test

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
db-down: ## stop exactly the processes in the local pid files (both instances)
	@./deploy/local/db-down.sh
	@PD_INSTANCE=b ./deploy/local/db-down.sh

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
test: lint db-up db-up-b ## run every test (race detector) against the real PostgreSQL and PgBouncer
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: bench-scope
bench-scope: db-up ## tenant binding overhead: plain vs scoped vs naive, c=1/8, direct/PgBouncer (~2 min)
	$(GO) run ./cmd/pdbench scope

.PHONY: bench-fleet
bench-fleet: db-up ## 1,000 tenant schemas: fleet no-op check, additive rollout to all, naive inspect loop (~3 min)
	$(GO) run ./cmd/pdbench fleet

.PHONY: bench-api
bench-api: db-up ## tenant API at c=32: GET card, POST issue card; whole stack vs bare Fiber handler (~1 min)
	$(GO) run ./cmd/pdbench api

.PHONY: bench-provision
bench-provision: db-init ## 200 tenants through the API: cold (schema apply) vs warm pool, p50/p95 (~1 min)
	$(GO) run ./cmd/pdbench provision

.PHONY: bench-move
bench-move: db-up ## online move of a tenant with 100k cards: write pause, rows/s (~1 min)
	$(GO) run ./cmd/pdbench move
