# codectts: two commands. `make demo` speaks a sentence with the shipped voice; `make test` runs the suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
FULL := $(VENV)/.full
DEMO_TEXT ?= Hello! This is codectts, a small text to speech toolkit that runs on your own computer.

.PHONY: setup demo test check lint clean browser festival

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What `make demo` needs: the package and its runtime dependencies only.
$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(RUNTIME)

# Everything: corpus builder (teacher), evaluation (ASR, speaker), Mimi, server, training logs, test tools.
$(FULL): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[corpus,eval,mimi,serve,train,dev]'
	touch $(FULL) $(RUNTIME)

setup: $(FULL)

demo: $(RUNTIME)
	$(BIN)/codectts say "$(DEMO_TEXT)" -o demo.wav
	@echo "wrote demo.wav"

# Headless chromium for the web-page test; the test skips with a reason where it cannot be installed.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: browser test will skip"

# Festival and its slt voice (Debian packages, ~9 s) for the real `corpus festival` test; it skips without them.
festival:
	@test -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts || (apt-get update -qq && apt-get install -y -qq festival festvox-us-slt-hts >/dev/null) || echo "festival not installed: its corpus test will skip"

test: $(FULL) browser festival
	$(BIN)/python -m pytest

# Fast loop while developing: lint, then every test not marked slow (no real teacher, ASR or browser).
check: lint
	$(BIN)/python -m pytest -m "not slow and not browser"

lint: $(FULL)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
