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

N_CANDIDATES = 10
N_COLD_STARTS = 2
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


def run(zoo) -> dict:
    """Timings (seconds) of swaps, cold starts and per-candidate evaluation on `zoo`, and their ratios."""
    from mergescope.scoring.lmeval import TaskRunner, resolve_tasks

    # one runner for every model, as a sweep's worker keeps one
    tasks = TaskRunner(resolve_tasks(zoo.task_names(), [zoo.task_yaml_dir()]))
    scratch = Path(tempfile.mkdtemp(prefix="mergescope-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        cold = [_cold_start(zoo.model_path("base")) for _ in range(N_COLD_STARTS)]
        swaps = _swap_sweep(zoo, tasks, scratch)
        hf_eval = _hf_evaluations(zoo, tasks, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    cold_start = statistics.mean(cold)
    swap = statistics.mean(s["write_s"] + s["reload_s"] for s in swaps)
    vllm_eval = statistics.mean(s["eval_s"] for s in swaps)
    return {
        "candidates": N_CANDIDATES,
        "cold_start_s": cold,
        "swap_s_mean": swap,
        "write_s_mean": statistics.mean(s["write_s"] for s in swaps),
        "reload_s_mean": statistics.mean(s["reload_s"] for s in swaps),
        "swap_share_of_cold_start": swap / cold_start,
        "vllm_eval_s_mean": vllm_eval,
        "hf_load_and_eval_s_mean": statistics.mean(hf_eval),
        "one_engine_total_s": cold_start + sum(s["write_s"] + s["reload_s"] + s["eval_s"] for s in swaps),
        "fresh_engine_each_total_s_extrapolated": N_CANDIDATES * (cold_start + vllm_eval),
        "hf_total_s": sum(hf_eval),
        "tasks": list(tasks.suite.names),
        "machine": f"{os.cpu_count()} CPUs visible, torch threads {_torch_threads()}",
    }


def _cold_start(model_dir: Path) -> float:
    from mergescope.serving.vllm import VLLMBackend

    backend = VLLMBackend()
    started = time.perf_counter()
    backend.serve(model_dir)
    backend.generate(["Q: 1 + 1 = ? A:"], max_tokens=4)
    seconds = time.perf_counter() - started
    backend.close()
    return seconds


def _swap_sweep(zoo, tasks, scratch: Path) -> list[dict]:
    from mergescope.serving.vllm import VLLMBackend

    parents = [_state_dict(zoo.model_path(name)) for name in ("arith", "facts")]
    backend = VLLMBackend()
    backend.serve(zoo.model_path("base"))
    timings = []
    try:
        for index in range(N_CANDIDATES):
            started = time.perf_counter()
            model_dir = _write_candidate(parents, index / (N_CANDIDATES - 1), zoo.model_path("base"), scratch, index)
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


def _hf_evaluations(zoo, tasks, scratch: Path) -> list[float]:
    from mergescope.serving.hf import HFBackend

    backend = HFBackend()
    seconds = []
    for index in range(N_CANDIDATES):
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
    print(json.dumps(run(load_zoo(zoo_dir)), indent=1))
