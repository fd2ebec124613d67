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

.PHONY: setup demo test lint clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -c $(CONSTRAINTS) torch
	$(PIP) install -c $(CONSTRAINTS) -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/composer demo

test: setup
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check composer routers registry ray_cluster tests

clean:
	rm -rf $(VENV) build *.egg-info
