# emrchain — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
# The commit emrchaind version reports (validators compare it), stamped at
# link time: Go's own VCS stamp is off wherever GOFLAGS has -buildvcs=false.
COMMIT    := $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; })
LDFLAGS   := $(if $(COMMIT),-ldflags "-X main.commit=$(COMMIT)")
GOMODCACHE := $(shell $(GO) env GOMODCACHE)
# grpc-gateway v1 only for its copy of the googleapis protos (make proto).
GATEWAY_V1 := github.com/grpc-ecosystem/grpc-gateway@v1.16.0
GOOGLEAPIS := $(GOMODCACHE)/$(GATEWAY_V1)/third_party/googleapis
PROTO_DIR := proto
PROTO_FILES := $(shell find $(PROTO_DIR) -name '*.proto' | sort)
PROTOC_PLUGINS := protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build emrchaind and emrcli into ./bin.
	@mkdir -p $(BIN)
	$(GO) build $(LDFLAGS) -o $(BIN)/ ./cmd/...

.PHONY: test
test: lint ## Run every test (unit, in-process chain, fuzz seeds, real node) after lint; the CI command.
	$(GO) test -count=1 -timeout 15m ./...

.PHONY: test-race
test-race: ## Run the state machine, store and ABCI tests under the race detector.
	$(GO) test -count=1 -race -timeout 15m ./app/... ./store/... ./abci/...

.PHONY: lint
lint: ## gofmt and go vet (emrcli and emrchaind also as built for Windows and macOS).
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./cmd/emrcli ./cmd/emrchaind
	GOOS=darwin $(GO) vet ./cmd/emrcli ./cmd/emrchaind

.PHONY: fuzz
fuzz: ## Fuzz every decoder for FUZZTIME each (default 30s).
	@for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
	  for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
	    echo "== $$(dirname $$f) $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} ./$$(dirname $$f) || exit 1; \
	  done; done

.PHONY: bench
bench: ## Run the Go benchmarks of the state machine and the store.
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./app/... ./store/... ./abci/...

$(BIN)/%: go.mod
	@mkdir -p $(BIN)
	$(GO) build -o $@ $$($(GO) list tool | grep '/$*$$')

.PHONY: proto
proto: $(addprefix $(BIN)/,$(PROTOC_PLUGINS)) ## Regenerate Go, gRPC, gateway and OpenAPI code from proto/ (needs protoc: apt-get install protobuf-compiler).
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	@test -d $(GOOGLEAPIS) || $(GO) mod download $(GATEWAY_V1)
	cd $(PROTO_DIR) && protoc -I . -I $(GOOGLEAPIS) \
	  --plugin=protoc-gen-go=$(BIN)/protoc-gen-go --go_out=. --go_opt=paths=source_relative \
	  --plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	  --plugin=protoc-gen-grpc-gateway=$(BIN)/protoc-gen-grpc-gateway --grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative \
	  --plugin=protoc-gen-openapiv2=$(BIN)/protoc-gen-openapiv2 --openapiv2_out=. --openapiv2_opt=allow_merge=true,merge_file_name=emrchain/v1/emrchain,disable_default_errors=true,openapi_configuration=emrchain/v1/openapi.yaml \
	  $(patsubst $(PROTO_DIR)/%,%,$(PROTO_FILES))

# --- MinIO server for the blob store and sidecar tests -----------------------
# `make test` installs it into ./bin once (kept across runs) and points the
# tests at it; the tests start it on 127.0.0.1 with a temporary directory and
# stop it. Without it the MinIO tests skip.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c

.PHONY: minio
minio: $(BIN)/minio ## Install the MinIO server the tests run into ./bin (once; ~3 min to build).

$(BIN)/minio:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

test: $(BIN)/minio
test: export EMRCHAIN_MINIO_BIN := $(BIN)/minio

# --- A local consortium: 4 validators on 127.0.0.1 ---------------------------
# testnet/localnet.sh does the work; LOCALNET_DIR, VALIDATORS, BASE_PORT and
# BLOB (fs or minio) are passed through. ./localnet is git-ignored.
LOCALNET_DIR ?= $(CURDIR)/localnet
BLOB ?= fs

.PHONY: localnet
localnet: $(if $(filter minio,$(BLOB)),$(BIN)/minio) ## Build emrchaind, write ./localnet (unless it exists), start 4 validators in the background and wait for blocks (BLOB=minio: MinIO-backed sidecars).
	@mkdir -p $(BIN)
	$(GO) build $(LDFLAGS) -o $(BIN)/emrchaind ./cmd/emrchaind
	LOCALNET_DIR=$(LOCALNET_DIR) EMRCHAIND=$(BIN)/emrchaind MINIO=$(BIN)/minio BLOB=$(BLOB) ./testnet/localnet.sh start

.PHONY: localnet-stop
localnet-stop: ## Stop the processes of ./localnet (by their pid files) and wait until they are gone.
	LOCALNET_DIR=$(LOCALNET_DIR) ./testnet/localnet.sh stop

.PHONY: demo
demo: build ## Build, start a fresh 4-validator consortium (embedded blob store), run the oncology story with emrcli across hospitals, stop it all.
	@dir=$$(mktemp -d "$${TMPDIR:-/tmp}/emrchain-demo.XXXXXX"); \
	trap 'LOCALNET_DIR="$$dir/net" ./testnet/localnet.sh stop >/dev/null 2>&1; rm -rf "$$dir"' EXIT; \
	LOCALNET_DIR="$$dir/net" BASE_PORT=$${DEMO_BASE_PORT:-27600} CHAIN_ID=emrchain-demo LOCALNET_HINT=0 EMRCHAIND=$(BIN)/emrchaind ./testnet/localnet.sh start && \
	LOCALNET_DIR="$$dir/net" EMRCLI=$(BIN)/emrcli EMRCHAIND=$(BIN)/emrchaind ./testnet/demo.sh

.PHONY: demo-localnet
demo-localnet: build ## Run the emrcli story on the running ./localnet (make localnet first).
	LOCALNET_DIR=$(LOCALNET_DIR) EMRCLI=$(BIN)/emrcli EMRCHAIND=$(BIN)/emrchaind ./testnet/demo.sh

# --- emrchain against CometBFT's kvstore -------------------------------------
# testnet/bench_chain.sh does the work (see its header for the knobs:
# DURATION, RATE_FRACTION, BACKEND, NODE_GOGC, ...). Not part of make test.
COMETBFT_VERSION := v1.0.1
BENCH_OUT ?= $(CURDIR)/bench-chain

.PHONY: bench-chain
bench-chain: $(BIN)/cometbft $(BIN)/load ## Load a 4-validator emrchain and a 4-validator CometBFT kvstore in turn, after a warm-up phase of each (~9 min; REPEAT=3 for medians of three rounds); prints "emrchain N tx/s, kvstore M tx/s, ratio R", results in ./bench-chain.
	@mkdir -p $(BIN)
	$(GO) build $(LDFLAGS) -o $(BIN)/emrchaind ./cmd/emrchaind
	$(GO) build -o $(BIN)/cometbft-cometdb ./testnet/cometbft-cometdb
	BIN=$(BIN) BENCH_OUT=$(BENCH_OUT) ./testnet/bench_chain.sh

# testnet/bench_fill.sh: one emrchain network at saturation on a fresh state,
# then filled with FILL (default 1,000,000) AddRecords, then at saturation
# again (~15 min). Not part of make test.
BENCH_FILL_OUT ?= $(CURDIR)/bench-fill

.PHONY: bench-fill
bench-fill: ## Throughput and per-block FinalizeBlock/Commit time of a 4-validator emrchain, fresh and with 1M records (~15 min); results in ./bench-fill.
	@mkdir -p $(BIN)
	$(GO) build $(LDFLAGS) -o $(BIN)/emrchaind ./cmd/emrchaind
	BIN=$(BIN) BENCH_OUT=$(BENCH_FILL_OUT) ./testnet/bench_fill.sh

$(BIN)/cometbft:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION)

$(BIN)/load:
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install github.com/cometbft/cometbft/test/loadtime/cmd/load@$(COMETBFT_VERSION)
