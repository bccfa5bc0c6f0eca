# Two commands matter: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-unit up down status bench soak system-deps install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@infra/bin/system-deps

# Start the local stack, play a customer's story into ERP and CRM, and show the traffic.
demo: system-deps $(STAMP)
	$(BIN)/tidemark up
	$(BIN)/tidemark demo

# The whole suite, integration tests included, against real services started as local processes.
test: system-deps $(STAMP)
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Benchmarks (never timed tests): each stage beside a ceiling measured in the same run.
bench: system-deps $(STAMP)
	$(BIN)/tidemark bench all

# 15 minutes of steady mixed traffic, memory of every process sampled every 30 s (not in CI).
soak: system-deps $(STAMP)
	$(BIN)/tidemark soak --minutes 15

up: system-deps $(STAMP)
	$(BIN)/tidemark up

down: $(STAMP)
	$(BIN)/tidemark down

status: $(STAMP)
	$(BIN)/tidemark status

clean:
	-$(BIN)/tidemark down
	rm -rf .tidemark
