# LesionAI: the two commands are `make demo` and `make test`.
# Each creates .venv if it is absent and installs what it needs.
#
# TORCH_SPEC pins the CPU wheel that lies on disk on the team's machines. On a machine with
# an NVIDIA GPU install a CUDA build instead, e.g.
#   make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128" test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# The TAPS prostate gland model (its weights file, checked by sha256); --no-deps: see pyproject.toml
TAPS_SPEC ?= lavlab-taps==1.1.2
STAMP := $(VENV)/.lesionai-installed

.PHONY: install demo test lint clean system-deps

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test,mrml]'
	$(PY) -m pip install --quiet --no-deps $(TAPS_SPEC)
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lesionai demo --out demo-output

lint: $(STAMP)
	$(PY) -m ruff check .

# Off-screen rendering tests (slice views through VTK's EGL window) need Mesa's EGL; installed with
# apt when absent (CI runs as root on Debian).
# dciodvfy (dicom3tools) validates the DICOM objects LesionAI writes; the browser tests drive Debian's chromium.
system-deps:
	@ldconfig -p | grep -q libEGL_mesa || { apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri; }
	@command -v dciodvfy >/dev/null || { apt-get update -qq && apt-get install -y -qq dicom3tools; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

test: $(STAMP) system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest Testing

clean:
	rm -rf demo-output .pytest_cache
