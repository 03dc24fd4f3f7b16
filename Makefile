# ferrocache: `make run` serves, `make test` tests. Both do their own set-up.
CARGO    ?= cargo
CORES    ?= $(shell nproc)
LISTEN   ?= 127.0.0.1:11211
MEMORY   ?= 1024
ARGS     ?=

.PHONY: all build run test test-unit test-integration test-conformance test-clients \
        deps bench bench-compare bench-scaling lint fuzz soak tune clean

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
