# Tidings — run `make help` for the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO               ?= go
# The toolchain go.mod pins (its toolchain line), fetched through the Go
# module proxy when the local Go is older: govulncheck found the standard
# library of go1.26.8 affected by vulnerabilities fixed in go1.26.9/10.
export GOTOOLCHAIN ?= auto
BIN              := bin/tidings
# The protovalidate rules imported by the API, as a pinned Go module (see buf.yaml).
PROTOVALIDATE    := github.com/bufbuild/protovalidate@v1.2.2
# golangci-lint is run at a pinned version with `go run`, outside go.mod: its
# own dependencies would otherwise pin ours (as its authors advise).
GOLANGCI_LINT    := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
# google/api/{annotations,http}.proto (the HTTP/JSON mapping of the API), as
# pinned in grpc-gateway v1's third_party/googleapis: a Go module the proxy
# serves, so code generation needs no registry (see buf.yaml).
GOOGLEAPIS       := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
TEST_FLAGS       ?= -race -timeout 12m
BENCH            ?= .
FUZZTIME         ?= 2m

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install what Tidings needs beyond Go (redis-server, chromium via apt-get; axe-core from npm) when missing
	@deploy/scripts/ensure-redis.sh
	@deploy/scripts/ensure-chromium.sh
	@deploy/scripts/ensure-axe.sh

.PHONY: build
build: ## Build bin/tidings
	$(GO) build -o $(BIN) ./services/tidings

.PHONY: run
run: deps build ## Run everything on embedded NATS + a local redis-server (data in .data/)
	$(BIN) dev

.PHONY: test
test: deps lint ## Lint, then run every test (real redis-server and JetStream, started by the tests)
	$(GO) test $(TEST_FLAGS) ./...
	cd deploy && $(GO) test -mod=mod -count=1 ./...   # Kubernetes manifests: rendered and validated offline (own module, which follows the main one)
	@echo "Full-size graph import/export (100,000 users, 2,000,000 edges; without -race):"
	$(GO) test -count=1 -timeout 10m -run 'TestImportExportLargeGraph' -v ./services/admin/

.PHONY: bench
bench: deps build ## Measure Tidings against this machine's limits (6-8 min; README, Performance)
	$(BIN) bench full

.PHONY: bench-quick
bench-quick: deps build ## The same figures on smaller organisations, in about 2.5 minutes
	$(BIN) bench quick

.PHONY: gobench
gobench: deps ## Run the Go micro-benchmarks of the hot paths (BENCH=regexp to pick)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem ./...

.PHONY: nats-server
nats-server: ## Build bin/nats-server from the nats-server module go.mod pins (for the local cluster)
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2

.PHONY: cluster-up
cluster-up: deps build nats-server ## Start a loopback NATS R3 cluster, a Redis Cluster, workers and API processes (data in .data/cluster)
	deploy/local-cluster/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop exactly the processes cluster-up started (data stays in .data/cluster)
	deploy/local-cluster/cluster.sh down

.PHONY: cluster-status
cluster-status: ## What the local cluster runs where, and whether it is healthy
	deploy/local-cluster/cluster.sh status

.PHONY: test-cluster
test-cluster: ## Fault suite against the running local cluster, about 8 min (FAULT=name[,name] for some; FAULT=list lists them)
	$(GO) run ./services/faultsuite $(if $(filter list,$(FAULT)),--list,$(if $(FAULT),--fault $(FAULT)))

.PHONY: image
image: ## Build the container image (deploy/image) with docker, podman or buildah; says so when none exists
	@deploy/image/build.sh $(IMAGE)

.PHONY: proto-deps
proto-deps:
	@$(GO) mod download $(PROTOVALIDATE)
	@mkdir -p .buf-deps
	@ln -sfn "$$($(GO) env GOMODCACHE)/$(PROTOVALIDATE)/proto/protovalidate" .buf-deps/protovalidate
	@$(GO) mod download $(GOOGLEAPIS)
	@ln -sfn "$$($(GO) env GOMODCACHE)/$(GOOGLEAPIS)/third_party/googleapis" .buf-deps/googleapis

.PHONY: proto
proto: proto-deps ## Lint the API and regenerate its Go code and OpenAPI document
	$(GO) tool buf lint
	$(GO) tool buf generate

.PHONY: lint
lint: proto-deps vulncheck ## buf lint, golangci-lint (.golangci.yaml: vet, staticcheck, errorlint, gosec, revive, gofmt...), govulncheck
	$(GO) tool buf lint
	$(GO) run $(GOLANGCI_LINT) run --allow-parallel-runners ./...

.PHONY: vulncheck
vulncheck: ## govulncheck against a database built offline from golang.org/x/vulndb (pinned)
	@GO=$(GO) deploy/scripts/govulncheck.sh

.PHONY: fuzz
fuzz: deps ## Fuzz every RPC of a real server (FUZZTIME=5m to change how long)
	$(GO) test -run '^$$' -fuzz '^FuzzServer$$' -fuzztime $(FUZZTIME) ./services/stacktest/

.PHONY: breaking
breaking: proto-deps ## Check the API against the last release tag
	@tag=$$(git describe --tags --abbrev=0 2>/dev/null || true); \
	if [ -z "$$tag" ]; then echo "no release tag yet: nothing to compare against"; \
	else $(GO) tool buf breaking --against ".git#tag=$$tag"; fi

.PHONY: check-generated
check-generated: proto ## Fail if generated code differs from what is committed
	@git diff --exit-code -- proto || { echo "generated code is stale: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto)" || { git status --porcelain -- proto; echo "untracked generated files"; exit 1; }

.PHONY: clean
clean: ## Remove build output (keeps .data/)
	rm -rf bin
