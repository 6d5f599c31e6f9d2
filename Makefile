# Two commands do all set-up: `make run` starts the server, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install sandbox-deps tex-deps

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

run: $(STAMP) sandbox-deps
	$(BIN)/collab serve $(ARGS)

test: $(STAMP) sandbox-deps tex-deps
	$(BIN)/pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check collab tests bench
	$(BIN)/ruff format --check collab tests bench
	$(BIN)/mypy
