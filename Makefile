# One-command entry points (README "Quick start").  Each target creates its own
# virtual environment in .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The local CPU build; pin it first so pip never pulls a multi-GB CUDA build.
# On a GPU machine: make TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>" ...
TORCH_SPEC ?= torch==2.13.0
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test install bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[test]"
	@touch $@

install: $(VENV)/.installed

## demo: set up, then denoise the bundled sample with the quick preset
demo: $(VENV)/.installed
	$(VENV)/bin/isnas-fast demo

## test: set up, then run the test suite (what CI runs)
test: $(VENV)/.installed-test
	$(PY) -m pytest -q

## bench: CPU benchmarks at their small defaults (pytest-benchmark), then the ratio table (see bench/README.md)
BENCH_OPTS ?= --bench-compile
bench: $(VENV)/.installed-test
	$(PY) -m pytest bench -q --bench-device cpu --benchmark-json=bench/results/bench-cpu.json $(BENCH_OPTS)
	$(PY) bench/report.py

clean:
	rm -rf $(VENV) isnas-demo build *.egg-info
