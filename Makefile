# peoplelog: `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test stress reliability lint venv clean bench

$(STAMP): pyproject.toml setup.py csrc/canonical.h fields/_native.c ledger/_native.c projections/_native.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
# The browser tests drive Debian's Chromium (never a downloaded browser): as root on a
# machine without it, install it.
	[ -x /usr/bin/chromium ] || [ "$$(id -u)" != 0 ] || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	BIN=$(BIN) bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The reliability suite (tests/reliability, also part of `make test`) at heavy sizes: more
# processes, operations, kills, restarts and property-based examples. Prints its figures.
# Then the guessing test at the 1,000 wrong passwords of issue 13 (200 in `make test`).
stress: $(STAMP)
	PEOPLELOG_STRESS=1 $(BIN)/python scripts/reliability_report.py --stress -- $(PYTEST_ARGS)
	PEOPLELOG_STRESS=1 $(BIN)/python -m pytest -q tests/test_accounts_links.py -k guessing

# The reliability suite at `make test` sizes, with its figures as a Markdown table.
reliability: $(STAMP)
	$(BIN)/python scripts/reliability_report.py -- $(PYTEST_ARGS)

# Benchmarks (not tests): ratios against raw PostgreSQL baselines, see bench/README.md.
# Uses PEOPLELOG_DATABASE_URL when set, else a throwaway embedded server; BENCH_SCALE=N
# multiplies the sizes. Writes bench/results.json.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check peoplelog schema fields ledger projections accounts http cli tests bench scripts docs/examples
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .peoplelog .pytest_cache .mypy_cache .ruff_cache *.egg-info
