# The README's commands. Each creates .venv (pip, from pyproject.toml) when it is missing or stale.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench image-check endpoint-check torchserve-check gpu-wheels gpu-check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: train the fusion model on the built-in sample dataset (generated once into the cache).
demo: $(STAMP)
	rm -rf runs/demo  # a fresh run each time, not a resumption of the last one
	$(BIN)/mmsent train --epochs 5 --run-name demo

# The whole test suite, slow end-to-end tests included, on two workers (pytest-xdist; a test file stays on one
# worker, so its module fixtures are built once; files in the order tests/conftest.py gives, longest first):
# its 20 slowest tests (where the time goes) and its wall time.
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
test: $(STAMP)
	@start=$$(date +%s); $(BIN)/python -m pytest $(PYTEST_WORKERS) --durations=20; status=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s wall time"; exit $$status

# Everything but the slow end-to-end tests.
test-fast: $(STAMP)
	@start=$$(date +%s); $(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow"; status=$$?; \
	echo "make test-fast: $$(( $$(date +%s) - start )) s wall time"; exit $$status

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

# The SageMaker job's Python environment reproduced (the training image's Python, torch, torchvision,
# torchaudio, numpy; a few GB downloaded once into .cache/image-venvs), the job's requirements.txt
# installed into it, and `mmsent launch --local` run there. FRAMEWORK=2.5.1 checks another image.
image-check: $(STAMP)
	$(BIN)/python tools/image_check.py $(if $(FRAMEWORK),--framework-version $(FRAMEWORK))

# An endpoint's cold start: model.tar.gz packed as `mmsent deploy` packs it (wheels included), unpacked, its
# requirements.txt installed with the package index cut off into a venv of the inference image's Python and
# torch (.cache/image-venvs), then model_fn and a first prediction; the seconds of each stage (target < 60 s).
endpoint-check: $(STAMP)
	$(BIN)/python tools/endpoint_check.py $(if $(MODEL_DIR),--model-dir $(MODEL_DIR))

# The packed archive under the real inference stack: the sagemaker-pytorch-inference toolkit's entry point
# starting TorchServe (Java) on 127.0.0.1 as the container does, GET /ping, a clip on POST /invocations.
torchserve-check: $(STAMP)
	$(BIN)/python tools/torchserve_check.py $(if $(MODEL_DIR),--model-dir $(MODEL_DIR)) $(if $(TRANSFORM),--transform)

# The GPU path in one prepared run (benchmarks/gpu_check.py; under 8 minutes on one GPU): where CUDA is.
# It uses .venv when there is one, else python3 with PYTHONPATH=src (a GPU image with torch). A bare image
# lacks PyAV, ftfy and the offline MiniLM: `make gpu-wheels` (here, with the package index) puts their
# wheels and MiniLM's config and tokenizer (no weights: the check builds random ones) in .gpu-carry/.
GPU_OUT ?= gpu-check
GPU_WORK ?= $(GPU_OUT)/work
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	if [ -d .gpu-carry/wheels ]; then $(GPU_PYTHON) -m pip install --quiet --no-index --find-links .gpu-carry/wheels av ftfy; fi
	PYTHONPATH=src $(GPU_PYTHON) benchmarks/gpu_check.py --out $(GPU_OUT) --work $(GPU_WORK) \
		$(if $(wildcard .gpu-carry/text-model),--random-text-init .gpu-carry/text-model)

gpu-wheels: $(STAMP)
	rm -rf .gpu-carry && mkdir -p .gpu-carry/wheels
	$(BIN)/python -m pip download --quiet av==18.1.0 ftfy==6.3.1 wcwidth --python-version 3.12 --only-binary=:all: \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu-carry/wheels
	$(BIN)/python -c "from transformers import AutoConfig, AutoTokenizer; from mmsent.pretrained import text_model_source as s; \
		AutoConfig.from_pretrained(s('default')).save_pretrained('.gpu-carry/text-model'); \
		AutoTokenizer.from_pretrained(s('default')).save_pretrained('.gpu-carry/text-model')"

clean:
	rm -rf $(VENV) .pytest_cache
