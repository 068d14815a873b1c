# FrameFleet: `make run` sets up and runs the demo on the embedded stack; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres lint typecheck bench clean up

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/framefleet demo --up

up: $(STAMP)
	$(BIN)/framefleet up

test: $(STAMP) test-players-deps
	$(BIN)/python -m tests.run_suites

# The browser playback tests' own needs: Debian's chromium and the npm-locked players (tests/players).
.PHONY: test-players-deps
test-players-deps:
	bash tests/players/install.sh

lint: $(STAMP)
	$(BIN)/ruff check framefleet tests bench
	$(BIN)/mypy framefleet

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache

# Builds the images and runs the compose dev profile for real with podman (tests/deploy/run.sh says how).
.PHONY: test-deploy
test-deploy: $(STAMP)
	bash tests/deploy/run.sh
