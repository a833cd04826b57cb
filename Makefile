# The front door. The README's two commands are `make demo` and `make test`; CI runs `make ci`.
.PHONY: demo test lint ci fmt bench

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

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash scripts/lint-infra.sh

fmt:
	cargo fmt --all

ci: lint test demo
