# Qorgau: set-up and operations. `make help` lists the targets.
#
# Needs only Python 3.11 (with venv), GNU make and, for `make services` on a machine without
# them, root and Debian's apt. Everything Python goes into .venv from requirements.lock.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON      ?= python3.11
VENV        ?= .venv
VPY         := $(VENV)/bin/python
UV          := $(VENV)/bin/uv
# uv itself is pinned too; it is the only thing pip installs.
UV_VERSION  ?= 0.13.9
LOCK        := requirements.lock
# The platform the lock is resolved for: CI, the dev machines and the Docker image.
LOCK_FLAGS  := --extra test --extra lint --extra bench --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (each test file stays on one worker; 0: one process).
TEST_WORKERS ?= 2
DEMO_ARGS   ?=
BENCH_ARGS  ?=
CHAOS_ARGS  ?=

# `make test QORGAU_MQTT_PORT=18830` (or QORGAU_PG_PORT=...) runs the suite against services on
# those ports: ensure-services starts a broker there from deploy/mosquitto.conf, and the tests
# (tests/conftest.py) are pointed at it unless QORGAU_TEST_MQTT_URL / QORGAU_TEST_PG_URL are set.
ifdef QORGAU_MQTT_PORT
export QORGAU_MQTT_PORT
export QORGAU_TEST_MQTT_URL ?= mqtt://127.0.0.1:$(QORGAU_MQTT_PORT)
endif
ifdef QORGAU_PG_PORT
export QORGAU_PG_PORT
export QORGAU_TEST_PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:$(QORGAU_PG_PORT)/postgres
endif

# `make test` and `make bench` use a broker of their own on this port, started from
# deploy/mosquitto.conf (persistence, raised queue limits, TCP_NODELAY), even where another broker
# already listens on 1883 with other settings (Debian's default config leaves Nagle on and keeps
# the 1000-message queue limit). QORGAU_MQTT_PORT / QORGAU_TEST_MQTT_URL given by you still win.
TEST_MQTT_PORT ?= 18830
test bench: export QORGAU_MQTT_PORT ?= $(TEST_MQTT_PORT)
test bench: export QORGAU_TEST_MQTT_URL ?= mqtt://127.0.0.1:$(QORGAU_MQTT_PORT)

# uv's cache usually sits on another filesystem than .venv: copy instead of warning about
# failed hard links on every install.
export UV_LINK_MODE ?= copy

# The install stamp is keyed on the CONTENT of the lock file and pyproject.toml (entry points,
# package list): a changed lock gets a new stamp name and reinstalls; an unchanged one is a
# no-op, whatever the files' mtimes say after a clone or checkout.
STAMP_KEY := $(shell cat $(LOCK) pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP     := $(VENV)/.qorgau-installed-$(STAMP_KEY)
BYTECODE  := $(VENV)/.qorgau-bytecode-$(STAMP_KEY)

.PHONY: help venv install lock lock-upgrade check-lock services browser stop-services lint test demo bench chaos clean distclean

help:
	@echo "make install        .venv (Python 3.11) + uv + pinned deps from $(LOCK) + qorgau (editable)"
	@echo "make venv           same as install"
	@echo "make lock           regenerate $(LOCK) from pyproject.toml (keeps current pins where possible)"
	@echo "make lock-upgrade   regenerate $(LOCK) taking the newest allowed versions"
	@echo "make check-lock     fail if $(LOCK) no longer matches pyproject.toml"
	@echo "make services       make sure Mosquitto (127.0.0.1:1883) and PostgreSQL (127.0.0.1:5432) are up"
	@echo "make browser        make sure Debian's chromium and chromium-driver are installed (the map's browser tests)"
	@echo "make stop-services  stop the broker that 'make services' started (if any)"
	@echo "make lint           ruff (lint + format check), mypy (strict: geo, dispatch, mqtt_bridge, web, patrol_planner), import-linter (the rooms' arrows)"
	@echo "make test           install + lint + services + the whole pytest suite (PYTEST_ARGS=...)"
	@echo "make demo           install + services + qorgau demo (DEMO_ARGS=...)"
	@echo "make bench          install + services + python -m bench, which writes BENCHMARKS.md"
	@echo "make chaos          install + services + python -m bench.chaos: 20,000 presses through kills and outages (CHAOS_ARGS=...)"
	@echo "make clean          remove caches, build output and var/ (stops our broker first)"
	@echo "make distclean      clean + remove .venv"

# --- Python environment ----------------------------------------------------------------------

$(VPY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { \
	  echo "ERROR: $(PYTHON) not found. Install Python 3.11 with venv (Debian 12: apt-get install python3 python3-venv) or pass PYTHON=/path/to/python3.11"; exit 1; }
	@echo "==> creating $(VENV) with $$(command -v $(PYTHON))"
	$(PYTHON) -m venv $(VENV)

$(UV): | $(VPY)
	@echo "==> installing uv $(UV_VERSION) into $(VENV)"
	$(VPY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(LOCK):
	@echo "ERROR: $(LOCK) is missing: run 'make lock' and commit it"; exit 1

$(STAMP): | $(UV) $(LOCK)
	@$(VPY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { \
	  echo "ERROR: $(VENV) is Python $$($(VPY) -c 'import platform; print(platform.python_version())'), not 3.11: run 'make distclean install'"; exit 1; }
	@rc=0; scripts/check-lock.sh $(UV) $(LOCK) $(LOCK_FLAGS) || rc=$$?; \
	  if [ $$rc -eq 1 ]; then echo "ERROR: $(LOCK) is stale: run 'make lock' and commit it"; exit 1; fi; \
	  if [ $$rc -eq 2 ]; then echo "WARNING: could not check that $(LOCK) matches pyproject.toml; installing it as it is"; fi
	@echo "==> installing pinned dependencies from $(LOCK) (byte-compiled)"
	$(UV) pip install --quiet --python $(VPY) --compile-bytecode -r $(LOCK)
	@echo "==> installing qorgau (editable, --no-deps)"
	$(UV) pip install --quiet --python $(VPY) --no-deps -e .
	@rm -f $(VENV)/.qorgau-installed-*
	@touch $@
	@echo "==> $(VENV) ready: $$($(UV) pip list --python $(VPY) 2>/dev/null | tail -n +3 | wc -l) packages"

# Byte-compile our own packages too: where PYTHONDONTWRITEBYTECODE is set (CI, these machines)
# Python never writes a .pyc, so without this every process (each test's service, each replica)
# compiled every module from source at each start: seconds per process on two shared cores.
# A .pyc whose source changed since is ignored by Python, so this is only ever a speed-up.
SOURCES := bench dispatch geo maps mqtt_bridge patrol_planner qorgau web

# A venv installed before --compile-bytecode has no .pyc, and uv compiles nothing when there is
# nothing to install: compile its packages once (compileall skips what is compiled already; a file
# that does not compile, some packages ship deliberately broken test data, is reported, not fatal).
$(BYTECODE): $(STAMP)
	@echo "==> byte-compiling $(VENV)'s packages"
	@$(VPY) -m compileall -q -j 0 "$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null \
	  || echo "WARNING: some installed files did not byte-compile"
	@rm -f $(VENV)/.qorgau-bytecode-*
	@touch $@

venv install: $(STAMP) $(BYTECODE)
	@$(VPY) -m compileall -q -j 0 $(SOURCES) >/dev/null

lock: | $(UV)
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o $(LOCK)

lock-upgrade: | $(UV)
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile pyproject.toml $(LOCK_FLAGS) --upgrade -o $(LOCK)

check-lock: | $(UV) $(LOCK)
	@scripts/check-lock.sh $(UV) $(LOCK) $(LOCK_FLAGS) && echo "$(LOCK) is up to date" || { \
	  rc=$$?; [ $$rc -eq 1 ] && echo "ERROR: $(LOCK) is stale: run 'make lock' and commit it"; exit $$rc; }

# --- Services --------------------------------------------------------------------------------

services:
	@scripts/ensure-services.sh

browser:
	@scripts/ensure-browser.sh

stop-services:
	@pidfile=var/mosquitto/mosquitto.pid; \
	if [ -f $$pidfile ] && kill -0 "$$(cat $$pidfile)" 2>/dev/null; then \
	  echo "==> stopping mosquitto (pid $$(cat $$pidfile))"; kill "$$(cat $$pidfile)"; \
	  for i in $$(seq 50); do kill -0 "$$(cat $$pidfile 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done; \
	else echo "==> no broker started by 'make services' is running"; fi

# --- Checks ----------------------------------------------------------------------------------

# The house checks itself: the same four checks run first in `make test`, so in CI.
lint: install
	@echo "==> ruff check"
	@$(VENV)/bin/ruff check .
	@echo "==> ruff format --check"
	@$(VENV)/bin/ruff format --check .
	@echo "==> mypy (strict)"
	@$(VENV)/bin/mypy
	@echo "==> import-linter"
	@PYTHONPATH=scripts $(VENV)/bin/lint-imports --no-cache

# --- Run -------------------------------------------------------------------------------------

test: install lint services browser
	@echo "==> pytest -n $(TEST_WORKERS) --dist loadfile $(strip $(PYTEST_ARGS))"
	@$(VPY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: install services
	$(VENV)/bin/qorgau demo $(DEMO_ARGS)

bench: install services browser
	$(VPY) -m bench $(BENCH_ARGS)

# Its own Mosquitto and (with --db postgres) its own PostgreSQL cluster, on free ports; writes
# bench/results/chaos.json and BENCHMARKS.md, and fails if a press was lost or stored twice.
chaos: install services
	$(VPY) -m bench.chaos $(CHAOS_ARGS)

# --- Cleaning --------------------------------------------------------------------------------

clean: stop-services
	rm -rf var build dist .pytest_cache test-artifacts *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
