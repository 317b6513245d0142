# Two commands matter: `make demo` (the main job, end to end) and `make test`.
# Both build .venv themselves from nothing but python3 and pip.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel by default so a CPU machine never pulls a multi-GB CUDA build.
# GPU users: `make TORCH_SPEC=torch demo` (or pip install into their own env).
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tomoclass demo --out demo_out --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/throughput.py --quick

clean:
	rm -rf $(VENV) demo_out
