# Two commands do all set-up: `make run` starts the server, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FRONTEND_STAMP := frontend/dist/index.html

.PHONY: run test lint install frontend

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The browser app, rebuilt when its sources change; built files are not committed.
$(FRONTEND_STAMP): frontend/package.json frontend/package-lock.json frontend/build.mjs $(shell find frontend/src -type f 2>/dev/null)
	@if command -v npm >/dev/null 2>&1; then \
		cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run build; \
	else \
		echo "npm is not installed: the browser app is not built (the API works without it)"; \
	fi

frontend: $(FRONTEND_STAMP)

install: $(STAMP) frontend

run: $(STAMP) frontend
	$(BIN)/collab serve $(ARGS)

test: $(STAMP) frontend
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collab tests bench
	$(BIN)/ruff format --check collab tests bench
	$(BIN)/mypy
