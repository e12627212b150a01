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

# Debian tools the tests and benchmarks use as independent peers: Perl's
# Mail::DKIM (a second DKIM verifier), Postfix's smtp-sink/smtp-source (an
# honest SMTP ceiling) and wrk (an honest HTTP ceiling). Installed once, only
# when missing.
SYSTEM_STAMP := $(VENV)/.system-deps

# Re-checked whenever this file changes (a package added to the list below).
$(SYSTEM_STAMP): Makefile | $(BIN)/python
	@if ! perl -MMail::DKIM::Verifier -e1 2>/dev/null || ! command -v /usr/sbin/smtp-sink >/dev/null \
		|| ! command -v wrk >/dev/null; then \
		echo "installing Debian packages: libmail-dkim-perl postfix wrk"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			libmail-dkim-perl postfix wrk >/dev/null || { apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			libmail-dkim-perl postfix wrk >/dev/null; }; \
	fi
	@# Dovecot: the real IMAP server the IMAP bounce mailbox tests start (tests/fixtures/dovecot.py).
	@if ! command -v /usr/sbin/dovecot >/dev/null; then \
		echo "installing Debian packages: dovecot-imapd"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			dovecot-imapd >/dev/null || { apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			dovecot-imapd >/dev/null; }; \
	fi
	touch $(SYSTEM_STAMP)

install: $(STAMP) $(SYSTEM_STAMP)

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
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

bench: install
	$(BIN)/python bench/jobs_throughput.py

clean:
	rm -rf $(VENV) .sendstream .pytest_cache .mypy_cache .ruff_cache
