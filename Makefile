# vidattn set-up and entry points. Everything a fresh machine needs is installed here.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch. GPU users: install your CUDA build into $(VENV) first (see README);
# the set-up keeps any torch that is already there.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup quickstart test test-slow lint bench clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(VENV)/bin/vidattn quickstart

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

test: lint
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	# exit code 5 means "no test is marked slow", which is not a failure
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]

# the headline rows of docs/performance.md (a few minutes on 2 cores); `benchmarks/models.py` alone runs
# the whole grid (T 8/16, B 1/8, fp32/bf16, eager/compiled: hours on a CPU)
bench: setup
	$(PY) benchmarks/models.py --frames 8 --batch 1 --precision fp32 --modes eager --no-train --ucf-batch 1 \
		--repeats 15 --out models.json
	$(PY) benchmarks/data_pipeline.py --out data_pipeline.json

clean-venv:
	rm -rf $(VENV)
