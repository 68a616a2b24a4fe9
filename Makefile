# `make demo` installs and runs augment on the embedded digits dataset; `make test` installs and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The stamp names pyproject.toml's hash and this checkout's path: a dependency change reinstalls everything, and
# a venv reused from another checkout (CI's cache) gets its editable install pointed here.
STAMP := $(VENV)/.installed-$(shell { cat pyproject.toml; echo $(CURDIR); } | sha256sum | cut -c1-16)

.PHONY: install demo test test-fast clean gpu-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --progress-bar off -e '.[test]' 2>&1 | grep -v "is ignored: it is neither" || true
	$(BIN)/python -c "import torch, torchvision, prefect, dvc, typer, sklearn, PIL" 
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/augment export-digits data/digits
	$(BIN)/augment run --no-dvc --dataset data/digits --out runs/digits --per-class 500 --set evaluate.seeds=3

test: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q

# The quick part of the suite (< 3 min on 2 cores): everything not marked slow (Prefect servers, DVC, whole runs).
test-fast: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf runs outputs data/digits

# On a machine with a GPU: measure the GPU path (and the CPU beside it) into benchmarks/results/gpu.{json,md}, <= 5 min.
gpu-check: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python benchmarks/gpu_check.py
