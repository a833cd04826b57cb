# The front door. The README's two commands are `make demo` and `make test`; CI runs `make ci`.
.PHONY: demo test lint ci fmt bench load

# Runs the main job locally: moto server on 127.0.0.1, the template's resources, a pipeline story through
# EventBridge into the real ingest handler, then timelines and notifications.
demo:
	scripts/with-moto.sh cargo run --quiet -p tollgate -- local demo

# Runs every test: unit, property, conformance and integration tests against the local endpoint.
test:
	scripts/with-moto.sh cargo test --workspace

# The performance benchmark (BENCHMARKS.md): release builds, then init, per-event cost, requests per event, memory and
# package size of every function against an empty one. Slow (release builds, valgrind): not part of `make test` or CI.
bench:
	scripts/bench.sh

# The full-size load and ordering run (docs/reliability.md): 100,000 simulated events with 20% duplicates and
# reordering through the ingest handler, in memory and against moto, compared with the clean in-order stream.
# About 50 minutes against the single-threaded local endpoint; `make load LOAD_ARGS="--store memory"` takes seconds.
# CI runs a small size inside `make test` (tests/tests/load.rs).
load:
	scripts/with-moto.sh cargo run --release --quiet -p tollgate-integration-tests --bin tollgate-load -- $(LOAD_ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash scripts/lint-infra.sh

fmt:
	cargo fmt --all

ci: lint test demo
