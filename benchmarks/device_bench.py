"""Benchmark: one sweep on the GPU against the same sweep on the CPU of the same machine.

`mergescope sweep --backend hf` over the sweep benchmark's 10 candidates x 2 tasks (sweep_bench.SPEC), once
with the GPU visible (mergekit's kernels and the transformers model on it) and once with CUDA_VISIBLE_DEVICES
empty, alternating, each a fresh process with start-up included. Also reports how far the two devices' scores
differ per candidate and task (float kernels differ between devices; greedy answers may flip on a near tie).
Skipped where torch sees no GPU.

    python benchmarks/device_bench.py [ZOO_DIR]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from bench_pair import BenchPair, zoo_pair
from sweep_bench import SPEC, sweep_command, timed


def _sweep(pair: BenchPair, spec: Path, out: Path, gpu: bool) -> float:
    # `python -m mergescope`: a GPU image may hold the package without its console script
    command = sweep_command(pair, spec, out, program=(sys.executable, "-m", "mergescope"))
    return timed(command, env=dict(os.environ, **({} if gpu else {"CUDA_VISIBLE_DEVICES": ""})))


def _scores(run: Path) -> dict[tuple[str, str], float]:
    from mergescope.runs.store import ResultsStore

    store = ResultsStore.of_run(run)
    rows = store.score_table()
    store.close()
    return {(row.label, row.task): row.value for row in rows}


def run(pair: BenchPair, repeats: int = 2) -> dict:
    """Median sweep times on each device, their ratio, and the largest score difference between devices."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("torch sees no GPU here")
    with tempfile.TemporaryDirectory(prefix="device-bench-") as scratch:
        scratch = Path(scratch)
        spec = scratch / "bench.yaml"
        spec.write_text(yaml.safe_dump(SPEC))
        times = {"gpu": [], "cpu": []}
        for repeat in range(repeats):
            for device in ("gpu", "cpu"):
                times[device].append(_sweep(pair, spec, scratch / f"{device}-{repeat}", device == "gpu"))
        gpu, cpu = _scores(scratch / "gpu-0"), _scores(scratch / "cpu-0")
    differences = {
        f"{label} {task}": gpu[label, task] - cpu[label, task]
        for label, task in gpu
        if gpu[label, task] != cpu.get((label, task))
    }
    return {
        "gpu": torch.cuda.get_device_name(0),
        "cpu_threads": torch.get_num_threads(),
        "subjects_x_tasks": len(gpu),
        "gpu_sweep_s": times["gpu"],
        "cpu_sweep_s": times["cpu"],
        "speedup_gpu_over_cpu": statistics.median(times["cpu"]) / statistics.median(times["gpu"]),
        "scores_that_differ": differences,
        "max_abs_score_difference": max((abs(value) for value in differences.values()), default=0.0),
    }


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    print(run(zoo_pair(load_zoo(sys.argv[1] if len(sys.argv) > 1 else ".cache/test-zoo"))))
