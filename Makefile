# kiloml: every set-up step lives here, so a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: demo test toolchain bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.base: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test,fleet]'
	touch $(VENV)/.base $@

# Host C compiler (generated C is built and sanitized on the host), the Cortex-M cross
# compiler (Debian's gcc-arm-none-eabi + newlib) and headless Chromium (the report's browser
# test), installed only when missing.
toolchain:
	@command -v gcc >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends gcc libc6-dev; }
	@command -v arm-none-eabi-gcc >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi; }
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

demo: $(VENV)/.base toolchain
	$(VENV)/bin/kiloml demo --out demo_out --data examples/magic_wand

test: $(VENV)/.test toolchain
	$(PY) -m pytest -q -n auto --maxprocesses 4

bench: $(VENV)/.test toolchain
	$(PY) benchmarks/compare_tflm.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/report.py

clean:
	rm -rf demo_out build .pytest_cache
