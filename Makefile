# Setup and the two jobs the README names. Everything lives in .venv; caches (zig's wasi-libc
# build) live in ~/.cache/mewe, outside the repository.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# From Debian, installed only where missing: the Rust frontend's toolchain (rustc with a
# wasm32-wasi std, cargo, and the qrcode crate with its dependencies in Debian's registry
# directory), Csmith and creduce for differential testing, and Chromium, in which a test loads
# the evaluation report.
APT_PACKAGES := rustc cargo libstd-rust-dev-wasm32 librust-qrcode-dev csmith libcsmith-dev creduce chromium

.PHONY: setup system-packages demo test clean

setup: $(STAMP) system-packages

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing from Debian:" $$missing; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: build an example service with mewe and run it.
demo: setup
	mkdir -p build
	$(BIN)/mewe build examples/base64.c --variants 4 -o build/base64.wasm
	$(BIN)/mewe inspect build/base64.wasm
	printf 'multivariant edge' | $(BIN)/mewe run build/base64.wasm

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf build $(VENV)
