# Two commands do all set-up: `make run` starts the server, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install sandbox-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Kernels and terminals run in bubblewrap (collab/sandbox): installed with apt-get when
# missing and we are root; otherwise the server still starts and says what is missing.
sandbox-deps:
	@if command -v bwrap >/dev/null && command -v setpriv >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y -q bubblewrap util-linux >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && apt-get install -y -q bubblewrap util-linux >/dev/null); \
	else \
		echo "NOTE: bubblewrap (bwrap) is missing and this is not root: kernels and terminals"; \
		echo "      will not start until it is installed (apt-get install bubblewrap);"; \
		echo "      cgroup limits and per-project users need the server to run as root."; \
	fi

run: $(STAMP) sandbox-deps
	$(BIN)/collab serve $(ARGS)

test: $(STAMP) sandbox-deps
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collab tests bench
	$(BIN)/ruff format --check collab tests bench
	$(BIN)/mypy
