# facecast: two commands for a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facecast-installed
# Debian packages: espeak-ng (TTS), sox (audio tools), chromium + driver (browser tests).
SYS_BINS := espeak-ng sox chromium chromedriver
SYS_PKGS := espeak-ng sox chromium chromium-driver

.PHONY: install sysdeps serve test lint typecheck pytest demo clean

install: sysdeps $(STAMP)

# Installs missing Debian packages when run as root (CI and fresh machines); otherwise says what to install.
sysdeps:
	@missing=""; for b in $(SYS_BINS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $(SYS_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PKGS) >/dev/null; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install $(SYS_PKGS)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

serve: install
	$(VENV)/bin/facecast serve

demo: install
	$(VENV)/bin/facecast render --audio src/facecast/assets/demo_speech.wav -o out/demo.mp4

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

typecheck: install
	$(VENV)/bin/mypy

pytest: install
	$(VENV)/bin/pytest -q

test: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
