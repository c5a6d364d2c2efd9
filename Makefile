# The README's two commands: `make demo` and `make test`. Both create (or reuse) .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo test install bench mutation clean

install: $(STAMP)

# Reinstall when the package's requirements change.
$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,onnx]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m experiments.cli.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests

# Deliberate bugs (tests/mutations.py) applied to a temporary copy: does the suite catch each? Not part of `make test`.
mutation: $(STAMP)
	$(PY) -m tests.mutation_check

bench: $(STAMP)
	$(PY) -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
