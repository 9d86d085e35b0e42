# `make test` on a fresh machine installs what the tests need and runs them all.
# Everything is built once, in the release profile (the browser tests run the
# release binary, and sharing one profile halves a cold build).

.PHONY: test test-deps test-lint test-rust test-browser test-no-rebuild run fuzz fuzz-long

test: test-deps test-lint test-rust test-browser test-no-rebuild

# Formatting and lints first: they fail in seconds, before the long build.
test-lint:
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

test-deps:
	scripts/install-test-deps.sh

test-rust:
	cargo build --release --workspace --bins
	# The build `cargo run --release` makes (the server alone): its shared
	# dependencies get fewer features than in the workspace build (the load
	# tester's HTTP client, the test bed), so it is built once here, and
	# `cargo run --release` after `make test` compiles nothing.
	cargo build --release
	python3 scripts/check-dockerfile.py
	.venv/bin/python scripts/check-kubernetes.py
	if command -v cargo-nextest >/dev/null; then cargo nextest run --release --workspace; else cargo test --release --workspace; fi
	cargo bench --workspace --no-run

# A newcomer's `cargo run --release` after `make test` must not rebuild.
test-no-rebuild:
	@if cargo build --release 2>&1 | grep Compiling; then echo "cargo run --release would rebuild the crates above after make test" >&2; exit 1; fi
	@echo "cargo run --release after make test: nothing to compile"

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
