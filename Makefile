# Two commands do all set-up: `make run` starts the server, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

FRONTEND_STAMP := frontend/dist/index.html

.PHONY: run test lint install sandbox-deps browser-deps tex-deps frontend

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

# LaTeX builds (collab/latex) run latexmk: TeX Live's base, latexmk and the common
# packages and fonts (about 165 MB), installed the same way. Without them a build fails
# with a message naming the packages, and everything else works.
TEX_PACKAGES = texlive-latex-base latexmk texlive-latex-recommended texlive-fonts-recommended
tex-deps:
	@if command -v latexmk >/dev/null && command -v pdflatex >/dev/null \
		&& kpsewhich xcolor.sty >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends $(TEX_PACKAGES) >/dev/null 2>&1 || \
		(apt-get update -q >/dev/null && \
		 apt-get install -y -q --no-install-recommends $(TEX_PACKAGES) >/dev/null); \
	else \
		echo "NOTE: TeX is missing and this is not root: LaTeX builds will fail until"; \
		echo "      apt-get install --no-install-recommends $(TEX_PACKAGES)"; \
	fi

# The browser tests drive Debian's chromium (never a downloaded browser); the app is built
# with node and npm. Installed with apt-get when missing and we are root.
browser-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else \
		echo "NOTE: missing$$missing: install them (apt-get install$$missing) for the browser tests"; \
	fi

frontend: $(FRONTEND_STAMP)

install: $(STAMP) frontend

run: $(STAMP) frontend sandbox-deps
	$(BIN)/collab serve $(ARGS)

test: browser-deps $(STAMP) frontend sandbox-deps tex-deps
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collab tests bench
	$(BIN)/ruff format --check collab tests bench
	$(BIN)/mypy
