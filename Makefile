# Composer — the two commands a new user needs:
#   make demo   set up .venv, build the demo ocean if missing, show it, serve it (Ctrl-C stops)
#   make test   set up .venv and run the test suite
PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
# constraints.txt pins torch==2.13.0 (a local CPU wheel); pass CONSTRAINTS=... to override
CONSTRAINTS ?= constraints.txt
PYTEST_ARGS ?=

.PHONY: setup demo demo-base test bench-smoke lint format clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c $(CONSTRAINTS) torch
	$(PIP) install -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/composer demo

# retrain the shipped demo base (composer/demo/shipped_base, the domains ocean's seed-0 base LM);
# needed after a change to the domains corpus, tokenizer or base recipe (a test says when)
demo-base: setup
	$(PY) -c "from composer.demo.build import ship_base; ship_base()"

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) bench-smoke

# every bench/ script in its seconds-long mode (part of `make test`; full runs: python bench/NAME.py)
BENCHES := training mixture mixed_batch dispatch realtext token_routing compositions adapter_memory residency continuous routing registry_reads serving registration
bench-smoke: setup
	@for b in $(BENCHES); do echo "== bench/$$b.py --smoke"; \
	  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COMPOSER_QUIET=1 $(PY) bench/$$b.py --smoke || exit 1; done

# ruff's lint rules and its formatter (the code is kept `ruff format`ted; `make format` applies it)
LINTED := composer routers registry ray_cluster tests bench
lint: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: setup
	$(VENV)/bin/ruff format $(LINTED)

clean:
	rm -rf $(VENV) build *.egg-info
