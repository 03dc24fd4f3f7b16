# ferrocache: `make run` serves, `make test` tests. Both do their own set-up.
CARGO    ?= cargo
CORES    ?= $(shell nproc)
LISTEN   ?= 127.0.0.1:11211
MEMORY   ?= 1024
ARGS     ?=
# `make install`: PREFIX for the paths, DESTDIR to stage them (packagers).
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

.PHONY: all build run test test-unit test-integration test-conformance test-clients test-metrics \
        deps bench bench-compare bench-fairness bench-scaling bench-sweep lint fuzz soak tune clean install test-deploy

all: build

build:
	$(CARGO) build --release

## make run CORES=8 [LISTEN=0.0.0.0:11211] [MEMORY=4096] [ARGS="--tokens tokens.txt"]
run: build
	./target/release/ferrocache --cores $(CORES) --listen $(LISTEN) --memory-mb $(MEMORY) $(ARGS)

## Installs what the tests need (memcached, libmemcached-tools, client libraries) when missing.
deps:
	bash tests/install-deps.sh

## Unit tests, byte-exact integration tests against the real binary, the
## memccapable peer suite, and the real-client matrix.
test: deps
	$(CARGO) build --release
	$(CARGO) test --release
	bash tests/memccapable.sh
	bash tests/clients/run.sh
	bash tests/deploy.sh

## /metrics against the real tools: promtool check metrics, and a real
## Prometheus server scraping it (also part of `cargo test` in `make test`).
test-metrics: deps
	$(CARGO) build --release
	CI=1 $(CARGO) test --release --test metrics

## `make install` into a scratch DESTDIR, and the unit checked with
## `systemd-analyze verify`.
test-deploy: deps
	bash tests/deploy.sh

## Installs the binary, its man page (generated from the flags), the systemd
## unit (ExecStart= pointing at BINDIR) and its sysusers.d entry, for a
## dedicated `ferrocache` user (`systemd-sysusers` creates it). See
## docs/DEPLOY.md.
install: build
	$(CARGO) run --release --quiet --example mangen > target/ferrocache.1
	sed 's|/usr/local/bin/ferrocache|$(BINDIR)/ferrocache|' deploy/ferrocache.service > target/ferrocache.service
	install -D -m 0755 target/release/ferrocache $(DESTDIR)$(BINDIR)/ferrocache
	install -D -m 0644 target/ferrocache.1 $(DESTDIR)$(MANDIR)/man1/ferrocache.1
	install -D -m 0644 target/ferrocache.service $(DESTDIR)$(UNITDIR)/ferrocache.service
	install -D -m 0644 deploy/ferrocache.sysusers $(DESTDIR)$(SYSUSERSDIR)/ferrocache.conf

## The real-client matrix: Python, Perl, PHP and Ruby programs, and the Rust
## memcache crate (also part of `cargo test` in `make test`).
test-clients: deps
	$(CARGO) build --release
	$(CARGO) test --release --test real_client
	bash tests/clients/run.sh

bench: deps
	$(CARGO) bench --bench protocol --bench store --bench mesh
	bash benches/compare.sh
	bash benches/memory.sh

bench-compare: deps
	bash benches/compare.sh

## Tenant fairness: a hot flood beside a small tenant, equal demand, and
## 1,000 tenants (see benches/fairness.sh).
bench-fairness:
	bash benches/fairness.sh

## CPU per operation and p99 against request rate (10% to saturation),
## ferrocache --cores 1/2 against memcached -t 1/2, pipeline 1 and 16, with
## memtier_benchmark; writes target/sweep/sweep.{tsv,png}. QUICK=1: short runs.
## PELIKAN=1 also builds Pelikan segcache from its public source (needs
## GitHub, or PELIKAN_SRC=a local checkout) and measures it beside them.
bench-sweep: deps
	bash benches/sweep.sh

## Scaling over 1-8 cores against memcached -t N (needs 16 CPUs by default:
## servers on 0-7, the load generator on 8-15; see benches/README.md).
bench-scaling: deps
	bash benches/scaling.sh

soak: deps
	bash benches/soak.sh

fuzz:
	bash tests/fuzz/run.sh

## Shows what the host tuning would change; APPLY=1 applies it.
tune:
	APPLY=$(APPLY) bash tuning/tune.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
