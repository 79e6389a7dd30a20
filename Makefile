# The README's commands. Each creates .venv (pip, from pyproject.toml) when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench image-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: train the fusion model on the built-in sample dataset (generated once into the cache).
demo: $(STAMP)
	rm -rf runs/demo  # a fresh run each time, not a resumption of the last one
	$(BIN)/mmsent train --epochs 5 --run-name demo

# The whole test suite, slow end-to-end tests included.
test: $(STAMP)
	$(BIN)/python -m pytest

# Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

# The SageMaker job's Python environment reproduced (the training image's Python, torch, torchvision,
# torchaudio, numpy; a few GB downloaded once into .cache/image-venvs), the job's requirements.txt
# installed into it, and `mmsent launch --local` run there. FRAMEWORK=2.5.1 checks another image.
image-check: $(STAMP)
	$(BIN)/python tools/image_check.py $(if $(FRAMEWORK),--framework-version $(FRAMEWORK))

clean:
	rm -rf $(VENV) .pytest_cache
