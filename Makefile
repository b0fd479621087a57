# taskgate: `make run` serves the demo Caddyfile, `make test` runs every test.
SHELL   := /bin/bash
.SHELLFLAGS := -o pipefail -c
GO      ?= go
GOBIN   := $(shell $(GO) env GOPATH)/bin
XCADDY  := $(or $(shell command -v xcaddy 2>/dev/null),$(GOBIN)/xcaddy)
XCADDY_VERSION := v0.4.5
# taskgate's version, stamped into both builds (`taskgate version`, the
# User-Agent of webhooks and source calls).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/taskgate/taskgate/internal/buildinfo.stamped=$(VERSION)
# A count, not a duration: Go 1.26's fuzzing coordinator can fail a clean
# run that a duration ends mid-call (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 10000x

.PHONY: run build deps test unit integration fuzz bench clean

# The demo Caddyfile's webhook secret and receiver token, unless the
# environment sets them: demo values, not secrets.
TASKGATE_DEMO_WEBHOOK_SECRET ?= whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
TASKGATE_DEMO_RECEIVER_TOKEN ?= demo-receiver

## run: build taskgate and serve the demo Caddyfile on :8080
run: taskgate
	TASKGATE_DEMO_WEBHOOK_SECRET='$(TASKGATE_DEMO_WEBHOOK_SECRET)' TASKGATE_DEMO_RECEIVER_TOKEN='$(TASKGATE_DEMO_RECEIVER_TOKEN)' \
		./taskgate run --config Caddyfile --adapter caddyfile

## taskgate: the binary, with the go toolchain (same program as `make build`), when
## it is older than the sources: a binary that `make build` made is left alone
GO_SOURCES := $(shell find . -name '*.go' -not -path './.git/*' -not -name '*_test.go') $(wildcard backend/storage/redis/lua/*.lua backend/ratelimit/*.lua) go.mod go.sum
taskgate: $(GO_SOURCES)
	$(GO) build -ldflags '$(LDFLAGS)' -o taskgate ./cmd/taskgate

## build: the binary, with xcaddy from the manifest xcaddy.toml
build: $(XCADDY)
	XCADDY_GO_BUILD_FLAGS="-ldflags '$(LDFLAGS)'" $(XCADDY) build $$($(GO) run ./internal/xcaddyargs xcaddy.toml)

$(XCADDY):
	$(GO) install github.com/caddyserver/xcaddy/cmd/xcaddy@$(XCADDY_VERSION)

## deps: what the tests need beyond Go: redis-server, and chromium for the console's browser tests
## (Debian's packages)
deps:
	@command -v redis-server >/dev/null && command -v chromium >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server chromium >/dev/null; }
	@redis-server --version
	@chromium --version

## test: vet, unit tests (with the race detector), integration tests, short fuzzing
test: deps unit integration fuzz

unit:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./backend/... ./caddymodule/... ./internal/... ./cli/...

# The integration suite prints a line per test as it ends; its whole output
# goes to INTEGRATION_LOG, printed in full when a test fails, between two
# copies of the failing tests' own messages (integration/failures.awk).
# TASKGATE_BIN (set by .ci/run to the xcaddy build) tests that binary
# instead of building one.
INTEGRATION_LOG ?= $(or $(TMPDIR),/tmp)/taskgate-integration.log
integration:
	@echo "integration: a line per test as it ends (whole output: $(INTEGRATION_LOG))"
	@$(GO) test -v -count=1 -timeout 10m ./integration/... 2>&1 | tee $(INTEGRATION_LOG) \
		| grep --line-buffered -E '^(--- |ok |FAIL|panic:)' \
		|| { echo "integration failed; the failing tests' messages:"; \
			awk -f integration/failures.awk $(INTEGRATION_LOG) $(INTEGRATION_LOG); \
			echo "its whole output:"; cat $(INTEGRATION_LOG); \
			echo "the failing tests' messages, again:"; \
			awk -f integration/failures.awk $(INTEGRATION_LOG) $(INTEGRATION_LOG); exit 1; }

## fuzz: each fuzz target for FUZZTIME (default 10000 runs; FUZZTIME=1m for longer)
fuzz:
	@set -e; for pkg in $$($(GO) list ./backend/... ./caddymodule/...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## bench: Go benchmarks, then the load harness (edge chain, task creation, task runs, webhooks; each next to a baseline measured in the same run)
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./backend/... ./caddymodule/...
	$(GO) run ./bench

## lint-openapi: docs/openapi.yaml against Redocly's recommended rules (needs Node.js and npm)
REDOCLY_VERSION := 2.77.0
.PHONY: lint-openapi
lint-openapi:
	npx --yes @redocly/cli@$(REDOCLY_VERSION) lint --format=stylish docs/openapi.yaml

## screenshots: the console's browser tests, saving the pages docs/console.md shows in docs/img
.PHONY: screenshots
screenshots: deps
	mkdir -p docs/img
	TASKGATE_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -run '^TestConsoleInABrowser$$' ./integration/

clean:
	rm -f taskgate

## soak: the fault suite (TestFault) in its long form: TASKGATE_SOAK (default 10m) of mixed load with
## repeated kill -9 of a bolt node and Redis restarts under two nodes, against a receiver failing half
TASKGATE_SOAK ?= 10m
.PHONY: soak
soak: deps
	TASKGATE_SOAK=$(TASKGATE_SOAK) $(GO) test -count=1 -run '^TestFault$$' -timeout 2h -v ./integration/
