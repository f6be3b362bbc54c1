# taproot — run `make demo` or `make test` as root on Debian 12.

export PATH := $(PATH):/usr/local/go/bin
# containers/image: pure-Go OpenPGP, no gpgme cgo.
export GOFLAGS := -tags=containers_image_openpgp
GO ?= go

PREFIX ?= /usr/local
DESTDIR ?=
BIN ?= $(CURDIR)/bin
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/taproot

# The systemd units install puts in SYSTEMDUNITDIR and uninstall removes.
UNITS = taproot-clean.service taproot-clean.timer taproot-clean@.service taproot-clean@.timer \
	taproot-check.service taproot-check@.service

UNIT_PKGS = $$($(GO) list ./... | grep -v '/acceptance')
FUZZTIME ?= 30s
SOAK_COUNT ?= 5
# TestSoak runs 30 s in `make test`; `make soak` runs it this long.
SOAK_SECONDS ?= 300
# TestPowerCut (UML) cuts power 4 times in `make test`; `make soak` this often.
SOAK_CUTS ?= 40

.PHONY: all build deps test-user vet unit acceptance test demo bench soak fuzz install install-check install-files uninstall man deb lint clean

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

# Both run strict (scripts/gotest-strict.sh): any skipped test fails them.
unit:
	bash scripts/gotest-strict.sh -count=1 -timeout 10m $(UNIT_PKGS)

acceptance: build
	TAPROOT_BIN=$(BIN)/taproot TAPROOT_QUOTA_BIN=$(BIN)/taproot-quota \
		bash scripts/gotest-strict.sh -count=1 -timeout 30m ./acceptance/...

# The one command: installs what is missing, builds, vets, unit tests,
# acceptance tests with the real parts.
test: deps test-user build vet unit acceptance

demo: deps test-user build
	bash scripts/demo.sh

# taproot vs rootless podman and skopeo+umoci on locally built images, served
# by a local docker-registry (as root; installs what is missing; not pass/fail).
# Go micro-benchmarks: $(GO) test -run='^$$' -bench=. ./...
# taproot against podman and the floors, 20 concurrent creates, syscalls per
# entry and the scale curve (scripts/bench.sh, issue 18), then the Go
# benchmarks: 20 concurrent cold creates (issue 5), cold create with sync on
# vs off and check --quick of 100 images (issue 15), and stats with 1 MiB vs
# 1 GiB written, in UML (issue 4).
bench: build
	bash scripts/bench.sh
	TAPROOT_BIN=$(BIN)/taproot TAPROOT_QUOTA_BIN=$(BIN)/taproot-quota \
		$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 30m ./acceptance/...
	$(GO) test -run='^$$' -bench=. -skip='^BenchmarkScale$$' $$($(GO) list ./... | grep -v '/acceptance')

# Runs the acceptance suite SOAK_COUNT times in a row, TestSoak SOAK_SECONDS each,
# then SOAK_CUTS power cuts in UML (about 20 s each).
soak: build
	TAPROOT_BIN=$(BIN)/taproot TAPROOT_QUOTA_BIN=$(BIN)/taproot-quota TAPROOT_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(GO) test -count=$(SOAK_COUNT) -timeout 120m ./acceptance/
	TAPROOT_UML_CUTS=$(SOAK_CUTS) $(GO) test -count=1 -run '^TestPowerCut$$' -timeout 120m -v ./acceptance/uml/

# Runs every Fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg; \
		done; \
	done

# Man pages from the cobra command tree, into bin/man (view: man -l bin/man/taproot-create.1).
man: build
	rm -rf $(BIN)/man
	$(BIN)/taproot __man $(BIN)/man

# The dpkg database of the system under DESTDIR, and whether it has the
# taproot package: install and uninstall refuse to mix with the .deb (both
# own /etc/cron.d/taproot; dpkg would stop at a conffile prompt, and an
# uninstall could delete the package's files).
DPKG_ADMINDIR = $(DESTDIR)/var/lib/dpkg
deb_installed = case "$$(dpkg-query --admindir=$(DPKG_ADMINDIR) -W -f='$${db:Status-Status}' taproot 2>/dev/null)" in \
	""|not-installed|config-files) false ;; *) true ;; esac

# Binaries (taproot-quota setuid root), man pages, shell completions, the
# systemd service+timer for `taproot clean` and the cron line, docs.
# PREFIX=/usr/local and DESTDIR= by default; run as root for a live install.
install: install-check build install-files
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; \
		echo "enable the hourly clean: systemctl enable --now taproot-clean.timer"; \
		echo "enable the boot-time check: systemctl enable taproot-check.service"; fi

install-check:
	@if $(deb_installed); then \
		echo "make install: the taproot .deb is installed (dpkg -l taproot): remove it first (apt-get remove taproot, as root), or stage elsewhere with DESTDIR=DIR" >&2; exit 1; fi

# Removes what install put there (same PREFIX, DESTDIR, SYSCONFDIR...).
# Stores, /etc/taproot and users' configs stay.
uninstall:
	@if [ -e $(DESTDIR)$(PREFIX)/bin/taproot ] && dpkg-query --admindir=$(DPKG_ADMINDIR) -S $(PREFIX)/bin/taproot >/dev/null 2>&1; then \
		echo "make uninstall: $(PREFIX)/bin/taproot belongs to the taproot .deb: remove it with apt-get remove taproot (as root)" >&2; exit 1; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now taproot-clean.timer taproot-check.service >/dev/null 2>&1 || true; fi
	rm -f $(DESTDIR)$(PREFIX)/bin/taproot $(DESTDIR)$(PREFIX)/bin/taproot-quota
	rm -f $(DESTDIR)$(MANDIR)/man1/taproot.1 $(DESTDIR)$(MANDIR)/man1/taproot.1.gz \
		$(DESTDIR)$(MANDIR)/man1/taproot-*.1 $(DESTDIR)$(MANDIR)/man1/taproot-*.1.gz
	rm -f $(DESTDIR)$(PREFIX)/share/bash-completion/completions/taproot \
		$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_taproot \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/taproot.fish
	for u in $(UNITS); do rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	rm -f $(DESTDIR)$(SYSCONFDIR)/cron.d/taproot
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi

# What install copies, from $(BIN) without building (scripts/mkdeb.sh uses it).
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/cron.d $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/vendor-completions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 $(BIN)/taproot $(DESTDIR)$(PREFIX)/bin/taproot
	install -m 4755 $(BIN)/taproot-quota $(DESTDIR)$(PREFIX)/bin/taproot-quota
	@if [ "$$(id -u)" -ne 0 ]; then echo "note: not root, taproot-quota is not owned by root; its setuid bit does nothing"; fi
	$(BIN)/taproot __man $(DESTDIR)$(MANDIR)/man1
	chmod 0644 $(DESTDIR)$(MANDIR)/man1/taproot*.1
	$(if $(GZIP_MAN),gzip -9nf $(DESTDIR)$(MANDIR)/man1/taproot*.1)
	$(BIN)/taproot completion bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/taproot
	$(BIN)/taproot completion zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_taproot
	$(BIN)/taproot completion fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/taproot.fish
	for u in $(UNITS); do \
		sed 's|@BINDIR@|$(PREFIX)/bin|g' packaging/systemd/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	sed 's|@BINDIR@|$(PREFIX)/bin|g' packaging/cron/taproot > $(DESTDIR)$(SYSCONFDIR)/cron.d/taproot
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/cron.d/taproot
	install -m 0644 README.md packaging/config.toml.example $(DESTDIR)$(DOCDIR)/
	$(if $(wildcard docs/*.md),install -m 0644 $(wildcard docs/*.md) $(DESTDIR)$(DOCDIR)/)

# dist/taproot_<version>_<arch>.deb (VERSION=… to set the version).
deb: build
	BIN=$(BIN) OUT=$(CURDIR)/dist bash scripts/mkdeb.sh

lint:
	@out=$$(gofmt -l .); \
		if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

clean:
	rm -rf $(BIN)
