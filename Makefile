# `make test` on a fresh machine installs what the tests need and runs them all.
# Everything is built once, in the release profile (the browser tests run the
# release binary, and sharing one profile halves a cold build).

.PHONY: test test-deps test-lint test-rust test-browser run fuzz fuzz-long

test: test-deps test-lint test-rust test-browser

# Formatting and lints first: they fail in seconds, before the long build.
test-lint:
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

test-deps:
	scripts/install-test-deps.sh

test-rust:
	cargo build --release --workspace --bins
	python3 scripts/check-dockerfile.py
	.venv/bin/python scripts/check-kubernetes.py
	if command -v cargo-nextest >/dev/null; then cargo nextest run --release --workspace; else cargo test --release --workspace; fi
	cargo bench --workspace --no-run

test-browser:
	cd tests/browser && npm ci --no-audit --no-fund && npm test

run:
	cargo run --release

# Coverage-guided fuzzing (cargo-fuzz; not in `make test`, which replays the
# targets' corpora and random inputs instead: see fuzz/README.md).
fuzz:
	scripts/fuzz.sh

fuzz-long:
	FUZZ_RUNS=10000000 scripts/fuzz.sh
