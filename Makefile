# The front door. The README's two commands are `make demo` and `make test`; CI runs `make ci`.
.PHONY: demo test lint ci fmt

# Runs the main job locally: moto server on 127.0.0.1, the template's resources, a pipeline story through
# EventBridge into the real ingest handler, then timelines and notifications.
demo:
	scripts/with-moto.sh cargo run --quiet -p tollgate -- local demo

# Runs every test: unit, property, conformance and integration tests against the local endpoint.
test:
	scripts/with-moto.sh cargo test --workspace

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash scripts/lint-infra.sh

fmt:
	cargo fmt --all

ci: lint test demo
