# lalin — the two commands of the README: `make run` and `make test`.
# Both create .venv with the pinned dependencies, build the Cython kernels and then act.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lalin-installed
# The browser of the dashboard's tests: Debian's Chromium and its driver (nothing is downloaded by the tests).
BROWSER := /usr/bin/chromedriver
APT := $(shell test "$$(id -u)" = 0 || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test test-external-pg lint bench clean

$(STAMP): setup.py pyproject.toml requirements.txt requirements-dev.txt $(wildcard cext/*.pyx)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python setup.py --quiet build_ext --inplace
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/lalin up

$(BROWSER):
	$(APT) update -qq
	$(APT) install -y -qq chromium chromium-driver

test: $(STAMP) $(BROWSER)
	$(BIN)/ruff check controllers cext infra streams devices tests bench
	$(BIN)/mypy
	LALIN_NO_EXTENSIONS=1 $(BIN)/pytest -q -p no:cacheprovider tests/unit  # the pure-Python twins
	$(BIN)/pytest

# The same suite against the PostgreSQL of the developer machines (127.0.0.1:5432, database test).
test-external-pg: $(STAMP)
	LALIN_DATABASE__URL=postgresql://postgres@127.0.0.1:5432/test $(BIN)/pytest tests/integration

lint: $(STAMP)
	$(BIN)/ruff check controllers cext infra streams devices tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/archive.py
	$(BIN)/python bench/timing.py
	$(BIN)/python bench/devices.py
	$(BIN)/python -P bench/loop.py
	$(BIN)/python -P bench/dashboard.py

clean:
	rm -rf $(VENV) build *.egg-info cext/*.c cext/*.so .lalin
