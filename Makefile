# `make run` and `make test` each create .venv and install greenpool into it on a fresh machine; `make test`
# also installs the bench extra and, as root with apt-get, the system tools its tests drive (scripts/).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
# `make run PORT=9000` (or HOST=...) binds there; else GREENPOOL_BIND from the environment; else $(HOST):$(PORT).
BIND    = $(if $(filter command line,$(origin HOST) $(origin PORT)),$(HOST):$(PORT),$(or $(GREENPOOL_BIND),$(HOST):$(PORT)))

.PHONY: run test lint bench system-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

system-deps:
	@scripts/install-system-deps.sh

run: $(BIN)/.installed
	$(BIN)/greenpool serve --bind $(BIND)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(BIN)/.bench-installed system-deps lint
	$(BIN)/python -m pytest

bench: $(BIN)/.bench-installed
	$(BIN)/python benchmarks/bench_pool_core.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
