# facecast: two commands for a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.facecast-installed
# The client package (clients/python) with its Pipecat and LiveKit integrations has its own environment:
# they need protobuf >= 5, the server's mediapipe needs protobuf < 5.
CLIENT_VENV ?= .venv-client
CLIENT_STAMP := $(CLIENT_VENV)/.facecast-client-installed
# Debian packages: espeak-ng (TTS), sox (audio tools), chromium + driver (browser tests),
# pulseaudio + libportaudio2 (the microphone client and its test), nginx + its RTMP module (push tests),
# janus (broadcast tests; gcc builds their loopback-only interface shim: bench/janus_server.py).
SYS_BINS := espeak-ng sox chromium chromedriver pulseaudio paplay nginx janus cc
SYS_FILES := /usr/lib/nginx/modules/ngx_rtmp_module.so
SYS_PKGS := espeak-ng sox chromium chromium-driver pulseaudio pulseaudio-utils libasound2-plugins libportaudio2 nginx libnginx-mod-rtmp janus gcc

.PHONY: install sysdeps serve test lint typecheck pytest demo clean

install: sysdeps $(STAMP) $(CLIENT_STAMP)

# Installs missing Debian packages when run as root (CI and fresh machines); otherwise says what to install.
sysdeps:
	@missing=""; for b in $(SYS_BINS); do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	for f in $(SYS_FILES); do test -e $$f || missing="$$missing $$f"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages: $(SYS_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYS_PKGS) >/dev/null; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install $(SYS_PKGS)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e clients/python -e '.[dev]'
	@touch $(STAMP)

$(CLIENT_STAMP): clients/python/pyproject.toml
	@test -x $(CLIENT_VENV)/bin/python || python3 -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install -q --disable-pip-version-check -e 'clients/python[pipecat,livekit,mic,test]'
	@touch $(CLIENT_STAMP)

serve: sysdeps $(STAMP)  # the server alone: no client environment needed
	$(VENV)/bin/facecast serve

demo: sysdeps $(STAMP)
	$(VENV)/bin/facecast render --audio src/facecast/assets/demo_speech.wav -o out/demo.mp4

lint: install
	$(VENV)/bin/ruff check src tests clients/python
	$(VENV)/bin/ruff format --check src tests clients/python

typecheck: install
	$(VENV)/bin/mypy
	cd clients/python && ../../$(CLIENT_VENV)/bin/mypy

pytest: install  # both environments: the server's tests, then the client package's against a real server
	$(VENV)/bin/pytest -q
	cd clients/python && ../../$(CLIENT_VENV)/bin/pytest -q

test: install  # both environments: the server's tests, then the client package's against a real server
	$(VENV)/bin/ruff check src tests clients/python
	$(VENV)/bin/mypy
	cd clients/python && ../../$(CLIENT_VENV)/bin/mypy
	$(VENV)/bin/pytest -q
	cd clients/python && ../../$(CLIENT_VENV)/bin/pytest -q

clean:
	rm -rf $(VENV) $(CLIENT_VENV) .pytest_cache .mypy_cache .ruff_cache
