# Setup and the two jobs the README names. Everything lives in .venv; caches (zig's wasi-libc
# build) live in ~/.cache/mewe, outside the repository.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The main job: build an example service with mewe and run it.
demo: $(STAMP)
	mkdir -p build
	$(BIN)/mewe build examples/base64.c --variants 4 -o build/base64.wasm
	$(BIN)/mewe inspect build/base64.wasm
	printf 'multivariant edge' | $(BIN)/mewe run build/base64.wasm

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf build $(VENV)
