# The two commands a newcomer needs: `make dev` and `make test`.
SHELL          := /bin/bash
PLUGIN_NAME    := vault-plugin-secrets-inabit
PLUGIN_VERSION ?= v0.2.0
VAULT_VERSION  ?= v1.21.0
BIN_DIR        := $(CURDIR)/bin
PLUGIN_BIN     := $(BIN_DIR)/$(PLUGIN_NAME)
# The mock inabit as a program: the e2e suite runs one process per mock (MOCK_INABIT_BIN).
MOCK_BIN       := $(BIN_DIR)/mock-inabit
VAULT_BIN      := $(CURDIR)/.tools/vault-$(VAULT_VERSION)/vault
LDFLAGS        := -X github.com/inabit/vault-plugin-secrets-inabit.Version=$(PLUGIN_VERSION)
FUZZTIME       ?= 30s

export VAULT_BIN PLUGIN_VERSION

.PHONY: build test unit e2e fmt fmt-check vet check-tree mock mock-bin dev vault fuzz bench bench-mounts bench-announce clean soak release release-check \
	mutants mutants-curated mutants-gremlins release-check-all

build:
	go build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)

# Everything that passes on a fresh machine: lint, unit tests with the race detector, fuzz seeds,
# two release builds that must match byte for byte,
# and the end-to-end suite on a real Vault (built once per machine by scripts/install-vault.sh).
test: check-tree fmt-check vet unit release-check e2e

unit:
	go test -race -count=1 ./...

e2e: build vault mock-bin
	cd e2e && MOCK_INABIT_BIN=$(MOCK_BIN) go test -count=1 -timeout 45m -v ./...

mock-bin:
	go build -o $(MOCK_BIN) ./internal/cmd/mock-inabit

# Release zips and SHA256SUMS for linux and darwin into dist/ (scripts/release.sh says how).
release:
	./scripts/release.sh "$(VERSION)"

# Two release runs on this tree must give byte-identical files, stamped with their version.
release-check:
	VERSION=v0.0.0-check RELEASE_CHECK_PLATFORMS=linux/amd64 ./scripts/release-check.sh

# Every release platform, each built a second time from an empty GOCACHE (several minutes).
release-check-all:
	VERSION=v0.0.0-check ./scripts/release-check.sh

# VAULT_BIN=/path/to/vault (any make target) uses that binary instead of building one.
vault:
	@if [ "$(VAULT_BIN)" != "$(CURDIR)/.tools/vault-$(VAULT_VERSION)/vault" ] && [ -x "$(VAULT_BIN)" ]; then \
		echo "vault: using VAULT_BIN=$(VAULT_BIN)"; \
	else VAULT_VERSION=$(VAULT_VERSION) ./scripts/install-vault.sh; fi

fmt:
	gofmt -w .

fmt-check:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# No build output in git: nothing over 1 MiB, no compiled binary.
check-tree:
	./scripts/check-tree.sh

vet:
	go vet ./...
	go vet -tags inabit_crashpoints .

mock:
	go run ./internal/cmd/mock-inabit $(MOCK_ARGS)

dev: build vault
	./scripts/dev.sh

fuzz:
	go test -run '^$$' -fuzz '^FuzzParseClaims$$' -fuzztime $(FUZZTIME) .
	go test -run '^$$' -fuzz '^FuzzResponseDecoding$$' -fuzztime $(FUZZTIME) ./internal/inabitapi/
	go test -run '^$$' -fuzz '^FuzzRedactWrappedToken$$' -fuzztime $(FUZZTIME) ./internal/inabitapi/
	go test -run '^$$' -fuzz '^FuzzConfigFields$$' -fuzztime $(FUZZTIME) .

clean:
	rm -rf $(BIN_DIR) .dev .e2e.log

# Load test on a real Vault (plugin vs a floor plugin, KV v2 and sys/health), the handler
# benchmarks, sustained load (each read path for SUSTAINED_PHASE on a Vault whose leases last
# 45 s, then each inabit path and its floor at once), and many mounts on one Vault (MOUNTS mounts
# of each plugin in turn, then the rotation herd; MOUNTS= skips it); writes bench/RESULTS.md,
# bench/sustained.svg and bench/mounts.svg. About 27 minutes plus 35 for the many-mounts stage;
# SUSTAINED=0 skips the sustained part (21 minutes). `make bench-mounts` runs only the many-mounts
# stage and replaces its section of bench/RESULTS.md; MOUNTS_HERD=0 leaves out the herd (20 minutes).
SUSTAINED       ?= 1
SUSTAINED_PHASE ?= 150s
MOUNTS          ?= 1,50,200,500
MOUNTS_HERD     ?= 1
MOUNTS_FLAGS     = -mounts=$(MOUNTS) -mounts-herd=$(if $(filter 1,$(MOUNTS_HERD)),true,false)
# Extra flags for e2e/cmd/bench, e.g. BENCH_FLAGS=-plugin-env=GOMEMLIMIT=40MiB to try another memory limit
BENCH_FLAGS     ?=

bench: bench-announce build vault mock-bin
	go build -o $(BIN_DIR)/floorplugin ./bench/floorplugin
	go test -run '^$$' -bench . -benchmem -benchtime 2s -count 3 . | tee $(BIN_DIR)/gobench.txt
	cd e2e && go run ./cmd/bench -vault-bin $(VAULT_BIN) -plugin-bin $(PLUGIN_BIN) \
		-floor-bin $(BIN_DIR)/floorplugin -mock-bin $(MOCK_BIN) -go-bench $(BIN_DIR)/gobench.txt -out $(CURDIR)/bench/RESULTS.md \
		-sustained=$(if $(filter 1,$(SUSTAINED)),true,false) -sustained-phase $(SUSTAINED_PHASE) $(MOUNTS_FLAGS) $(BENCH_FLAGS)

bench-mounts: build vault mock-bin
	@echo "make bench-mounts: about 15 minutes for MOUNTS=$(MOUNTS), plus 20 for the rotation herd (MOUNTS_HERD=0 leaves it out)"
	go build -o $(BIN_DIR)/floorplugin ./bench/floorplugin
	cd e2e && go run ./cmd/bench -vault-bin $(VAULT_BIN) -plugin-bin $(PLUGIN_BIN) \
		-floor-bin $(BIN_DIR)/floorplugin -mock-bin $(MOCK_BIN) -out $(CURDIR)/bench/RESULTS.md -mounts-only $(MOUNTS_FLAGS) $(BENCH_FLAGS)

bench-announce:
ifeq ($(SUSTAINED),1)
	@echo "make bench: about 27 minutes on 2 cores with the default SUSTAINED_PHASE=150s: handler benchmarks ~1 min," \
		"short load runs ~5 min, sustained load 5 read paths alone and 2 pairs at once x $(SUSTAINED_PHASE) plus two lease drains ~21 min. SUSTAINED=0 skips that part."
else
	@echo "make bench: about 6 minutes on 2 cores (handler benchmarks and short load runs; SUSTAINED=0)."
endif
ifneq ($(MOUNTS),)
	@echo "make bench: then the many-mounts stage (MOUNTS=$(MOUNTS)): about 15 minutes, plus 20 for the rotation herd (MOUNTS_HERD=0 leaves it out). MOUNTS= skips it."
endif

# The rotation simulation (sim_test.go) for many more seeds than `make test` runs (500); prints
# seeds, steps and the outcomes seen. SOAK_SEEDS=100000 make soak for a longer hunt.
SOAK_SEEDS ?= 10000
soak:
	SOAK_SEEDS=$(SOAK_SEEDS) go test -run TestSimulationSoak -count=1 -timeout 60m -v .

# Mutation testing, not part of `make test` (scripts/mutants/README.md): the curated protocol
# mutations in scripts/mutants/mutations.txt, each run against the unit suite (a few minutes each),
# then gremlins on GREMLINS_PKGS (a directory that does not exist yet is skipped). Both write their
# section of testdata/mutants.md; each fails on a survivor (curated) or an efficacy below
# MIN_EFFICACY after scripts/mutants/equivalent.txt (gremlins). MUTANTS_FLAGS / GREMLINS_FLAGS
# pass more flags, e.g. MUTANTS_FLAGS='-only no-wal-write,lost-not-sticky'.
GREMLINS_PKGS  ?= ./internal/rotation ./internal/inabitapi
MIN_EFFICACY   ?= 95
MUTANTS_FLAGS  ?=
GREMLINS_FLAGS ?=

mutants:
	@rc=0; $(MAKE) --no-print-directory mutants-curated || rc=1; \
		$(MAKE) --no-print-directory mutants-gremlins || rc=1; exit $$rc

mutants-curated:
	go run ./scripts/mutants curated $(MUTANTS_FLAGS)

mutants-gremlins:
	go run ./scripts/mutants gremlins -pkgs "$(GREMLINS_PKGS)" -min-efficacy $(MIN_EFFICACY) $(GREMLINS_FLAGS)
