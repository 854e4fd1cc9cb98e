# CryptoPulse. `make run` starts the whole topology from local binaries;
# `make test` runs every test on real Redis, Postgres and nginx.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MODULES   := libs testkit services/auth services/gateway services/fetcher tools e2e deploy/k8s
PKGS      := $(foreach m,$(MODULES),./$(m)/...)
# Packages with concurrency run under the race detector.
RACE_PKGS := ./libs/... ./testkit/... ./services/auth/... ./services/gateway/... ./services/fetcher/... ./tools/...
BIN       := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOVULNCHECK := golang.org/x/vuln/cmd/govulncheck@v1.9.0
FUZZTIME  ?= 2m
GATEWAYS  ?= 2
FETCHERS  ?= 2
PORT      ?= 3000

# name:package:executions in `make test` (a few seconds each). Counts, not
# times: a time budget can end in a spurious "context deadline exceeded"
# (golang/go#75804).
FUZZ_TARGETS := \
	FuzzCoinID:./libs/price:300000x \
	FuzzParseExpiresIn:./libs/jwtauth:300000x \
	FuzzLoginBody:./services/auth:8000x \
	FuzzAuthorizationHeader:./services/gateway:15000x \
	FuzzHistoryQuery:./services/gateway:8000x

.PHONY: help deps build check-tree check-docs test test-race test-unit test-e2e test-docker bench-docker fuzz fuzz-short lint vet fmt-check vuln-check tidy bench run demo clean test-k8s

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install redis-server, nginx and PostgreSQL 15 if missing (apt)
	@bash scripts/install-deps.sh

build: ## build every service and the tools into bin/
	@mkdir -p $(BIN)
	go build -o $(BIN)/ ./services/auth ./services/gateway ./services/fetcher ./tools/cgsim/cmd/cgsim ./tools/devstack/cmd/devstack

test: deps check-tree check-docs fmt-check vet test-race test-k8s test-e2e test-docker fuzz-short ## everything CI runs: format, vet, race tests, end-to-end, the Docker guide, short fuzzing
	@echo "make test: all checks passed"

test-race: ## unit and integration tests under the race detector
	go test -race -count=1 -timeout 15m $(RACE_PKGS)

test-unit: test-race

test-k8s: ## render the Kubernetes overlays (deploy/k8s) and check them against the services and nginx.conf
	go test -count=1 ./deploy/k8s/...

test-e2e: ## end-to-end tests: real binaries, Redis, Postgres, nginx, simulator
	go test -count=1 -timeout 30m -v ./e2e/... 2>&1 | tee e2e.out | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go:[0-9]+' ; exit $${PIPESTATUS[0]}

test-docker: ## the multi-instance guide's docker compose commands on the real Docker engine (docs/docker.md)
	go vet -tags dockerguide ./e2e/dockerguide/
	@bash scripts/docker/test-docker.sh

bench-docker: ## test-docker, its figures (up to healthy, rolling update, total) appended to bench/docker-guide.txt
	@mkdir -p bench
	@DOCKERGUIDE_BENCH=bench/docker-guide.txt bash scripts/docker/test-docker.sh

fuzz-short: ## every fuzz target for a bounded number of executions (seconds each)
	@set -e; for t in $(FUZZ_TARGETS); do \
		IFS=: read -r name pkg n <<< "$$t"; \
		echo "fuzz $$name in $$pkg: $$n"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$$n $$pkg; \
	done

fuzz: ## longer fuzzing by hand, FUZZTIME (2m) per target: make fuzz FUZZTIME=10m
	@set -e; for t in $(FUZZ_TARGETS); do \
		IFS=: read -r name pkg n <<< "$$t"; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		go test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

vet: ## go vet over every module
	go vet $(PKGS)

check-tree: ## fail when git tracks a compiled binary or a file over 2 MiB
	@bash scripts/check-tree.sh

check-docs: ## fail when a relative link or #anchor in README.md, docs/ or bench/ does not resolve
	go test -count=1 ./e2e/doclinks/

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint: vet ## go vet and staticcheck
	go run $(STATICCHECK) $(PKGS)

vuln-check: ## known vulnerabilities in the dependencies
	go run $(GOVULNCHECK) $(PKGS)

tidy: ## go mod tidy in every module
	@for m in $(MODULES); do (cd $$m && go mod tidy) || exit 1; done

bench: deps ## benchmarks on real Redis, Postgres and nginx; numbers in bench/results.txt
	@mkdir -p bench
	@{ echo "# make bench, $$(date -u +%FT%TZ), $$(nproc) cores"; \
	  go test -run='^$$' -bench=. -benchmem -count=3 ./libs/throttle/ ./services/fetcher/... ./services/gateway/... && \
	  go test -run='^$$' -bench=WaitingClients -benchtime=2x ./e2e/; } 2>&1 \
	  | grep -vE '^\s*\[' | tee bench/results.txt

# make bench-load [BASE=<git rev>] [BENCH_QUICK=1] [BENCH_OUT=bench/load-x.txt] [BENCH_SCENARIOS=stream,failover]
BENCH_OUT ?=
BENCH_SCENARIOS ?=
.PHONY: bench-load
bench-load: deps ## load benchmark through real nginx (wrk, tools/loadgen); table printed and written to bench/load-*.txt
	go run ./tools/benchload/cmd/benchload $(if $(BASE),-base '$(BASE)') $(if $(filter 1,$(BENCH_QUICK)),-quick) $(if $(BENCH_OUT),-out '$(BENCH_OUT)') $(if $(BENCH_SCENARIOS),-scenarios '$(BENCH_SCENARIOS)')

run: deps ## the whole topology on :$(PORT) from local binaries, against the real CoinGecko
	GATEWAYS=$(GATEWAYS) FETCHERS=$(FETCHERS) PORT=$(PORT) go run ./tools/devstack/cmd/devstack run

demo: deps ## the same, offline, against the bundled CoinGecko simulator
	GATEWAYS=$(GATEWAYS) FETCHERS=$(FETCHERS) PORT=$(PORT) go run ./tools/devstack/cmd/devstack demo

clean: ## remove binaries and local data
	rm -rf $(BIN) .data e2e.out dockerguide.out

# The chaos soak: make chaos [DURATION=5m] [SEED=n] [APPENDONLY=1].
DURATION ?= 5m
SEED     ?=
.PHONY: chaos
chaos: deps ## faults under load for DURATION (5m), invariants checked; report in bench/chaos-$(DURATION).txt
	@mkdir -p bench
	go run ./tools/chaos/cmd/chaos -duration $(DURATION) $(if $(SEED),-seed $(SEED)) $(if $(APPENDONLY),-appendonly) \
		-out bench/chaos-$(DURATION)$(if $(APPENDONLY),-appendonly).txt
