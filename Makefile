# The two set-up commands are `make run` and `make test`; everything a fresh
# machine needs is installed by them into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-service test-embedded lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/sendstream up

# The suite runs twice: on the machine's PostgreSQL service and on the embedded
# server, because both are supported deployments.
test: install test-service test-embedded

test-service: install
	SENDSTREAM_TEST_DATABASE=service $(BIN)/python -m pytest $(PYTEST_ARGS)

test-embedded: install
	SENDSTREAM_TEST_DATABASE=embedded $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python bench/jobs_throughput.py

clean:
	rm -rf $(VENV) .sendstream .pytest_cache .mypy_cache .ruff_cache
