"""Benchmark: 10 candidates through one live vLLM engine with weight swaps, against a fresh engine each.

Per candidate the swap path merges the two zoo parents in memory (mergekit's `merge_state_dicts`, linear,
10 mixing weights), writes the merged weights to a RAM-backed directory (/dev/shm) and reloads them into
the live engine. A fresh engine per candidate is not run 10 times (35 s each on CPU): cold start is
measured twice and the fresh-engine total is extrapolated as 10 x (mean cold start + evaluation), and the
report says so. The same zoo evaluation is timed with the hf backend to choose the CPU default.

    python benchmarks/vllm_bench.py [ZOO_DIR]      # default: .cache/test-zoo
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_pair import BenchPair, zoo_pair

from mergescope.serving.options import EngineOptions, HFOptions

N_CANDIDATES = 10
N_COLD_STARTS = 2
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
)


def run(pair: BenchPair, n_candidates: int = N_CANDIDATES) -> dict:
    """Timings (seconds) of swaps, cold starts and per-candidate evaluation on `pair`, and their ratios."""
    from mergescope.merging.spec import EvalSettings
    from mergescope.scoring.lmeval import TaskRunner, resolve_tasks

    # one runner for every model, as a sweep's worker keeps one
    settings = EvalSettings(apply_chat_template=pair.chat)
    tasks = TaskRunner(resolve_tasks(list(pair.tasks), pair.task_paths, pair.limit, settings))
    scratch = Path(tempfile.mkdtemp(prefix="mergescope-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        cold = [_cold_start(pair) for _ in range(N_COLD_STARTS)]
        swaps = _swap_sweep(pair, tasks, scratch, n_candidates)
        hf_eval = _hf_evaluations(pair, tasks, scratch, n_candidates)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cold_start = statistics.mean(cold)
    swap = statistics.mean(s["write_s"] + s["reload_s"] for s in swaps)
    vllm_eval = statistics.mean(s["eval_s"] for s in swaps)
    return {
        "candidates": n_candidates,
        "dtype": pair.dtype,
        "items_per_task": pair.limit or "all",
        "cold_start_s": cold,
        "swap_s_mean": swap,
        "write_s_mean": statistics.mean(s["write_s"] for s in swaps),
        "reload_s_mean": statistics.mean(s["reload_s"] for s in swaps),
        "swap_share_of_cold_start": swap / cold_start,
        "vllm_eval_s_mean": vllm_eval,
        "hf_load_and_eval_s_mean": statistics.mean(hf_eval),
        "one_engine_total_s": cold_start + sum(s["write_s"] + s["reload_s"] + s["eval_s"] for s in swaps),
        "fresh_engine_each_total_s_extrapolated": n_candidates * (cold_start + vllm_eval),
        "hf_total_s": sum(hf_eval),
        "tasks": list(tasks.suite.names),
        "machine": f"{os.cpu_count()} CPUs visible, torch threads {_torch_threads()}",
    }


def _cold_start(pair: BenchPair) -> float:
    from mergescope.serving.vllm import VLLMBackend

    backend = VLLMBackend(EngineOptions(dtype=pair.dtype))
    started = time.perf_counter()
    backend.serve(pair.base)
    backend.generate(["Q: 1 + 1 = ? A:"], max_tokens=4)
    seconds = time.perf_counter() - started
    backend.close()
    return seconds


def _swap_sweep(pair: BenchPair, tasks, scratch: Path, n_candidates: int) -> list[dict]:
    from mergescope.serving.vllm import VLLMBackend

    parents = [_state_dict(model) for model in pair.parents]
    backend = VLLMBackend(EngineOptions(dtype=pair.dtype))
    backend.serve(pair.base)
    timings = []
    try:
        for index in range(n_candidates):
            started = time.perf_counter()
            model_dir = _write_candidate(parents, index / (n_candidates - 1), pair.base, scratch, index)
            written = time.perf_counter()
            lm = backend.load(model_dir)
            reloaded = time.perf_counter()
            tasks.evaluate(lm, f"candidate-{index}")
            timings.append(
                {"write_s": written - started, "reload_s": reloaded - written, "eval_s": time.perf_counter() - reloaded}
            )
        assert backend.engine_starts == 1, "a swap restarted the engine"
    finally:
        backend.close()
    return timings


def _hf_evaluations(pair: BenchPair, tasks, scratch: Path, n_candidates: int) -> list[float]:
    from mergescope.serving.hf import HFBackend

    backend = HFBackend(HFOptions(dtype=pair.dtype))
    seconds = []
    for index in range(n_candidates):
        started = time.perf_counter()
        tasks.evaluate(backend.load(scratch / f"candidate-{index}"), f"candidate-{index}")
        seconds.append(time.perf_counter() - started)
    return seconds


def _state_dict(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def _write_candidate(parents: list[dict], mix: float, template: Path, scratch: Path, index: int) -> Path:
    """A linear merge (mergekit, in memory) written as a model directory beside copies of the config."""
    from mergekit.merge_methods import merge_state_dicts
    from safetensors.torch import save_file

    merged = merge_state_dicts(parents, "linear", parameters={"weight": [1 - mix, mix]})
    target = scratch / f"candidate-{index}"
    target.mkdir(exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in merged.items()}, target / "model.safetensors")
    for name in TOKENIZER_FILES:
        if (template / name).is_file():
            shutil.copy(template / name, target / name)
    return target


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    zoo_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / ".cache/test-zoo"
    print(json.dumps(run(zoo_pair(load_zoo(zoo_dir))), indent=1))
