# Every target sets up what it needs itself: a fresh clone only needs python3 (>= 3.10).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
TORCH_VERSION ?= 2.13.0
# One stamp per set of extras: the demo needs only [demo]; the tests also need [dev].
STAMP_DEMO := $(VENV)/.installed-demo
STAMP  := $(VENV)/.installed

.PHONY: venv test test-fast demo bench fuzz clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Re-install when the project's dependency list changes.
$(STAMP_DEMO): $(PY) pyproject.toml
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[demo]'
	touch $(STAMP_DEMO)

$(STAMP): $(STAMP_DEMO)
	$(PIP) install --quiet -e '.[dev,demo]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The main job: build AV-digits, pre-train, fine-tune, evaluate (see README).
demo: $(STAMP_DEMO)
	$(PY) -m zorro demo --out runs/demo --data data/avdigits

bench: $(STAMP_DEMO)
	$(PY) benchmarks/run_all.py

# 10,000 damaged media files through read_clip (docs/robustness.md); FUZZ_WORKERS processes.
FUZZ_WORKERS ?= 2
fuzz: $(STAMP)
	$(PY) tests/fuzz_decode.py --cases 10000 --workers $(FUZZ_WORKERS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
