# lalin — the two commands of the README: `make run` and `make test`.
# Both create .venv with the pinned dependencies, build the Cython kernels and then act.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lalin-installed

.PHONY: run test lint bench clean

$(STAMP): setup.py pyproject.toml requirements.txt requirements-dev.txt $(wildcard cext/*.pyx)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python setup.py --quiet build_ext --inplace
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lalin up

test: $(STAMP)
	$(BIN)/ruff check controllers cext infra streams devices tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check controllers cext infra streams devices tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/archive.py

clean:
	rm -rf $(VENV) build *.egg-info cext/*.c cext/*.so .lalin
