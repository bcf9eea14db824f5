# Two commands on a fresh machine:  `make run` (the pipeline) and `make test` (every test tier).
# Each installs what it needs: the venv, the Python packages, and (as root) bcc, kernel
# headers and tracefs for the eBPF collector. Kafka's jars are fetched on first broker start.
VENV    ?= .venv
PYTHON  ?= python3
HMTEL   := $(VENV)/bin/hmtel
PYTEST  := $(VENV)/bin/pytest

.PHONY: setup run test stop bench lint
.DEFAULT_GOAL := run

# native/hm_ed25519 (the processors' batch signature check) and native/hm_ingest (their native host
# states and usage fast path) are Rust, built by maturin with cargo
NATIVE  := native/hm_ed25519 native/hm_ingest
$(VENV)/.installed: pyproject.toml $(foreach d,$(NATIVE),$(wildcard $(d)/*.toml $(d)/*.pyi $(d)/Cargo.lock $(d)/src/*.rs))
	@PATH="$$HOME/.cargo/bin:$$PATH" command -v cargo >/dev/null \
	  || { echo "setup: building $(NATIVE) needs Rust's cargo (https://rustup.rs)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	PATH="$$HOME/.cargo/bin:$$PATH" $(VENV)/bin/pip install -q ./native/hm_ed25519 ./native/hm_ingest
	$(VENV)/bin/pip install -q -e '.[test,processors,gpu,dev]'
	touch $@

setup: $(VENV)/.installed
	@bash deploy/host-deps.sh $(VENV)
	@bash deploy/test-deps.sh

## run: start the local broker, ensure the topics, and run the pipeline (Ctrl-C stops it)
run: setup
	$(HMTEL) up

## test: every tier (unit, integration on a real broker, host/eBPF as root)
test: setup
	$(HMTEL) broker start
	$(PYTEST) tests

stop:
	$(HMTEL) broker stop

lint: setup
	$(VENV)/bin/mypy
