# The two commands of the README: `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BUYERS ?= 50000
DEMO_START ?= 2020-01-01
DEMO_END ?= 2024-12-31

.PHONY: demo test install dev lint typecheck bench clean browser java

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install --progress-bar on -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --progress-bar on -e ".[dev]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

demo: $(VENV)/.installed
	$(BIN)/riskmodel synth --out data/raw --buyers $(DEMO_BUYERS) --start $(DEMO_START) --end $(DEMO_END) --seed 7
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench pipelines

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy src/riskmodel

# the report's browser tests drive Debian's chromium through its chromedriver: installed here
# when missing (as root with apt-get; otherwise those tests fail and say what to install)
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "warning: chromium and chromium-driver are missing (install them as root: apt-get install chromium chromium-driver); the report's browser tests will fail" >&2; \
	  fi; \
	fi

# the Spark engine's tests run pyspark on local[2], which needs a Java runtime (17 or later):
# Debian's openjdk-17-jre-headless is installed here when `java` is missing (as root with
# apt-get; otherwise those tests fail and say what to install)
java:
	@if ! command -v java >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	  else \
	    echo "warning: java is missing (install it as root: apt-get install openjdk-17-jre-headless); the Spark engine's tests will fail" >&2; \
	  fi; \
	fi

# the notebooks run top to bottom in a fresh kernel (nbmake), in the same pytest run as tests/
test: $(VENV)/.dev-installed browser java
	$(BIN)/ruff check src tests bench pipelines notebooks
	$(BIN)/mypy src/riskmodel
	$(BIN)/pytest --nbmake tests notebooks

bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
