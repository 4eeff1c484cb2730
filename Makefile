# Development tasks. `make test` is the one command that CI runs (.ci/run): it creates or
# reuses a virtualenv, builds the Rust extension in release mode, then runs the Rust
# tests, the linters and the Python tests.

PYTHON ?= python3
# torch is several GB: keep the virtualenv outside the clone so every clone reuses it.
VENV ?= $(HOME)/.cache/cs336/venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.cs336-deps-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# Serialises builds into the shared virtualenv.
LOCK := flock $(VENV)/.build-lock
# Builds the extension and installs the package (editable) with its dependencies.
MATURIN := env VIRTUAL_ENV=$(VENV) $(BIN)/maturin develop -q --extras test,plot,interop,hf

.PHONY: venv build build-dev inplace test test-rs test-py lint demo bench stubtest

venv: $(DEPS_STAMP)

$(DEPS_STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "maturin>=1.9.4,<2" ruff mypy
	@touch $@

## build the extension in release mode into the virtualenv (editable: Python edits are live)
build: venv
	$(LOCK) $(MATURIN) --release
	@$(BIN)/python -c "import cs336._core" || (echo "the extension did not build"; exit 1)

## unoptimised build, faster to compile
build-dev: venv
	$(LOCK) $(MATURIN)

## build the extension into python/cs336/ without installing it; then run Python with
## PYTHONPATH=python (each git worktree gets its own build this way)
inplace:
	PYO3_BUILD_EXTENSION_MODULE=1 cargo build -q --profile quick --features python
	cp target/quick/lib_core.so python/cs336/_core.abi3.so

test-rs:
	cargo test -q

lint: build  # mypy reads the installed dependencies (torch, numpy)
	cargo fmt --all -- --check
	cargo clippy -q --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests benchmarks
	$(BIN)/ruff format --check python tests benchmarks
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test-py: build
	$(BIN)/python -m pytest -q; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

test: test-rs lint test-py

## the whole pipeline on the built-in corpus: tokenizer, tokens, model, loss plot, story
demo: build
	$(BIN)/cs336 demo --out demo

## the extension's stub against the compiled module
stubtest: build
	$(BIN)/python -m mypy.stubtest cs336._core --ignore-missing-stub

## side-by-side benchmarks against the peer tools (see benchmarks/RESULTS.md)
bench: build
	$(BIN)/python -m pip install -q rustbpe bpeasy tokie regex
	$(BIN)/python benchmarks/bench_pretokenize.py
	$(BIN)/python benchmarks/bench_train_bpe.py
	$(BIN)/python benchmarks/bench_encode.py
