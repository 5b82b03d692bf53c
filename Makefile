# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint format install demo bench clean docker docker-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the monitor on the embedded default (SQLite under data/, the packaged model, alerts to the console).
run: $(STAMP)
	$(BIN)/monitor run

## Run the test suite (PostgreSQL tests run when a server answers on 127.0.0.1:5432).
test: $(STAMP)
	$(BIN)/ruff check monitor tests bench models
	$(BIN)/ruff format --check monitor tests bench models
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench models

format: $(STAMP)
	$(BIN)/ruff format monitor tests bench models
	$(BIN)/ruff check --fix monitor tests bench models

demo: $(STAMP)
	$(BIN)/monitor demo

## Build the container image (CPU-only torch; see README "Container").
docker:
	docker build -t aichip-monitor .

## Build and smoke-test the image with a private Docker engine, as CI does (Debian machines; needs root).
docker-smoke: $(STAMP)
	bash .ci/docker-smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
