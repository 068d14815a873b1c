# FrameFleet: `make run` sets up and runs the demo on the embedded stack; `make test` sets up and tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-deps lint bench clean up

$(STAMP): pyproject.toml framefleet/console/vendor/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	bash framefleet/console/vendor/install.sh
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/framefleet demo --up

up: $(STAMP)
	$(BIN)/framefleet up

# What the suite needs from the system, installed when missing: PostgreSQL's server binaries, for the
# browser playback tests Debian's chromium and the npm-locked players (tests/players), and for the storage
# tests the npm-locked Azurite (tests/emulators).
test-deps:
	bash tests/setup/system-deps.sh
	bash tests/players/install.sh
	bash tests/emulators/install.sh

test: $(STAMP) test-deps
	$(BIN)/python -m tests.run_suites

lint: $(STAMP)
	$(BIN)/ruff check framefleet tests bench
	$(BIN)/mypy framefleet

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache framefleet/console/vendor/node_modules tests/players/node_modules tests/emulators/node_modules

# Builds the images and runs the compose dev profile for real with podman (tests/deploy/run.sh says how).
.PHONY: test-deploy
test-deploy: $(STAMP)
	bash tests/deploy/run.sh
