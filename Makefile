# The README's two commands: `make repro` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch is pinned here: an unpinned torch pulls a multi-GB CUDA build; 2.13.0 is a CPU build.
TORCH := torch==2.13.0

.PHONY: install test lint repro snapshot deps clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)" -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest -q

repro: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

# Rewrite dvc.yaml's code deps: the module files each stage's command imports (a test fails when stale).
deps: $(STAMP)
	$(BIN)/python scripts/dvc_deps.py

# Rebuild the shipped snapshot from the facts-only CC0 source kept in data/source/ (see data/README.md).
snapshot: $(STAMP)
	rm -f data/douban.sqlite.new
	DATABASE_URL=sqlite:///data/douban.sqlite.new $(BIN)/kadn import data/source/douban_movies_cc0_facts.csv
	mv data/douban.sqlite.new data/douban.sqlite

clean-venv:
	rm -rf $(VENV)
