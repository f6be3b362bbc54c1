# taproot — run `make demo` or `make test` as root on Debian 12.

export PATH := $(PATH):/usr/local/go/bin
# containers/image: pure-Go OpenPGP, no gpgme cgo.
export GOFLAGS := -tags=containers_image_openpgp
GO ?= go

PREFIX ?= /usr/local
DESTDIR ?=
BIN := $(CURDIR)/bin

UNIT_PKGS = $$($(GO) list ./... | grep -v '/acceptance')
FUZZTIME ?= 30s
SOAK_COUNT ?= 5

.PHONY: all build deps test-user vet unit acceptance test demo bench soak fuzz install lint clean

all: build

build:
	$(GO) build -o $(BIN)/taproot ./cmd/taproot
	$(GO) build -o $(BIN)/taproot-quota ./cmd/taproot-quota

deps:
	bash scripts/deps.sh

test-user:
	bash scripts/test-user.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -count=1 -timeout 10m $(UNIT_PKGS)

acceptance: build
	TAPROOT_BIN=$(BIN)/taproot TAPROOT_QUOTA_BIN=$(BIN)/taproot-quota \
		$(GO) test -count=1 -timeout 20m ./acceptance/...

# The one command: installs what is missing, builds, vets, unit tests,
# acceptance tests with the real parts.
test: deps test-user build vet unit acceptance

demo: deps test-user build
	bash scripts/demo.sh

bench:
	$(GO) test -run='^$$' -bench=. ./...

# Runs the acceptance suite SOAK_COUNT times in a row.
soak: build
	TAPROOT_BIN=$(BIN)/taproot TAPROOT_QUOTA_BIN=$(BIN)/taproot-quota \
		$(GO) test -count=$(SOAK_COUNT) -timeout 120m ./acceptance/

# Runs every Fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
		done; \
	done

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/taproot $(DESTDIR)$(PREFIX)/bin/taproot
	install -m 4755 $(BIN)/taproot-quota $(DESTDIR)$(PREFIX)/bin/taproot-quota
	@if [ "$$(id -u)" -ne 0 ]; then echo "note: not root, taproot-quota is not owned by root; its setuid bit does nothing"; fi

lint:
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

clean:
	rm -rf $(BIN)
