# Two commands do all the set-up on a fresh machine:
#   make dev    venv + install + a persistent dev node on 127.0.0.1:8545 (data in $(DATADIR))
#   make test   venv + install + system packages + npm clients + ethereum-etl venv + lint + every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATADIR ?= .cairn/dev
PYTEST_ARGS ?=

.PHONY: dev test lint bench install clients system-deps etl clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clients: node_modules/.installed

system-deps:
	./scripts/system-deps.sh

# ethereum-etl from PyPI in .venv-etl (it pins web3 5: its own venv, Python 3.8-3.10)
etl:
	./scripts/etl-venv.sh

dev: install
	$(BIN)/cairn dev --datadir $(DATADIR)

lint: install
	$(BIN)/ruff check cairn tests bench
	$(BIN)/ruff format --check cairn tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps clients etl lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install clients
	./scripts/system-deps.sh bench
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .venv-etl node_modules .mypy_cache .ruff_cache .pytest_cache
