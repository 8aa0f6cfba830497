# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= sources.toml

.PHONY: run test test-fast test-tools setup lint bench benign clean

$(VENV)/.installed: pyproject.toml setup.py watcher/detect/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Debian tools the tests run for real (root only; a failure is a warning and the test that
# needs the tool then fails, saying so): tor for the private Tor network of the end-to-end
# test, systemd-analyze to verify the unit as docs/service.md installs it, libarchive13 for 7-Zip
# and RAR archives (present on most Debian systems), chromium for the
# web console's browser tests (driven by playwright; browsers are never downloaded).
test-tools:
	@command -v tor >/dev/null || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tor; } || echo "make: apt-get install tor failed: tests/test_tor_e2e.py will fail" >&2
	@command -v systemd-analyze >/dev/null || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd; } || echo "make: apt-get install systemd failed: tests/test_service_install.py will fail" >&2
	@[ -d /usr/share/i18n/locales ] || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q locales; } || echo "make: apt-get install locales failed: tests/test_benign_corpus.py will fail" >&2
	@ldconfig -p | grep -q libarchive.so.13 || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libarchive13; } || echo "make: apt-get install libarchive13 failed: 7-Zip/RAR tests will fail" >&2
	@command -v chromium >/dev/null || [ "$$(id -u)" -ne 0 ] || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || echo "make: apt-get install chromium failed: tests/test_web_browser.py will fail" >&2

# Runs the daemon on the shipped configuration. The shipped config watches ./inbox;
# the synthetic demo sample is dropped there so the whole pipeline shows within seconds.
run: setup
	mkdir -p inbox
	cp -n -p examples/demo-extract.csv inbox/ 2>/dev/null || true   # -p: an old mtime, so the first poll takes it (files younger than 2 s may still be being written)
	$(VENV)/bin/watcher run --config $(CONFIG)

# ruff and mypy with the configuration in pyproject.toml: both clean, or the tests do not run.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup test-tools lint
	$(PY) -m pytest -q

# The suite without the tests marked slow (a real Tor network, kill -9 loops): a quick check.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) bench/bench_scan.py

# Benign text of this machine (docs, man pages, locale data, source code): no alert allowed.
benign: setup
	$(PY) bench/benign_corpus.py

clean:
	rm -rf $(VENV) state inbox .pytest_cache .mypy_cache .ruff_cache
