# codectts: two commands. `make demo` speaks a sentence with the shipped voice; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_TEXT ?= Hello! This is codectts, a small text to speech toolkit that runs on your own computer.

.PHONY: setup demo test lint clean browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[corpus,eval,mimi,serve,train,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/codectts say "$(DEMO_TEXT)" -o demo.wav
	@echo "wrote demo.wav"

# Headless chromium for the web-page test; skipped quietly where apt is unavailable.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) build *.egg-info
