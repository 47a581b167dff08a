"""Benchmark: an end-to-end sweep of 10 candidates x 2 tasks, mergescope vs the loop a user would script.

The naive loop is what one writes without mergescope: per candidate, `mergekit-yaml CONFIG OUT` and then
`lm_eval --model hf ... --log_samples` (each a fresh process that imports everything and loads the model).
mergescope runs `mergescope sweep` once over the same candidates (fresh process, start-up included), on the
same tasks, with the same backend (hf), keeping per-item results as the naive loop does with --log_samples.
mergescope also scores the two parents and the base (it always does); the naive loop as the issue defines it
does not, so its ratio (`speedup`) charges those three evaluations against mergescope. `speedup_like_for_like`
adds to the naive loop the three `lm_eval` calls that score the same reference models, which an emergence
analysis needs.

    python benchmarks/sweep_bench.py [ZOO_DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_pair import BenchPair, zoo_pair

BIN = Path(sys.executable).parent
SPEC = {
    "name": "bench",
    "methods": [
        {"method": "slerp", "parameters": {"t": {"start": 0.1, "stop": 0.9, "num": 8}}},
        {"method": "linear", "per_parent": [{"weight": 0.3}, {"weight": 0.7}]},
        {"method": "task_arithmetic", "per_parent": {"weight": 0.5}},
    ],
}
# The real model's version: a 135M-parameter model answering in chat costs ~100x a zoo model's evaluation, so
# four candidates (SLERP at t = 0.3, 0.7, the linear and the task-arithmetic merge) and one interleaved repeat.
REAL_SPEC = {
    "name": "bench",
    "methods": [
        {"method": "slerp", "parameters": {"t": {"grid": [0.3, 0.7]}}},
        *SPEC["methods"][1:],
    ],
}


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds `command` took to run to a successful end (start-up included)."""
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return time.perf_counter() - started


def sweep_command(
    pair: BenchPair, spec: Path, out: Path, program: tuple[str, ...] = (str(BIN / "mergescope"),)
) -> list[str]:
    """The benchmark's `mergescope sweep` of the pair's parents and base over `spec`, hf backend."""
    return [
        *program,
        "sweep",
        "--parents",
        *map(str, pair.parents),
        "--base",
        str(pair.base),
        "--sweep",
        str(spec),
        *pair.mergescope_eval_args(),
        "--backend",
        "hf",
        "--out",
        str(out),
    ]


def _naive_candidate(config: Path, pair: BenchPair, scratch: Path) -> float:
    model_dir = scratch / f"model-{config.stem}"
    return timed([str(BIN / "mergekit-yaml"), str(config), str(model_dir)]) + _naive_eval(model_dir, pair, scratch)


def _naive_eval(model_dir: Path, pair: BenchPair, scratch: Path) -> float:
    return timed(
        [
            str(BIN / "lm_eval"),
            "--model",
            "hf",
            "--model_args",
            f"pretrained={model_dir},dtype={pair.dtype}",
            *pair.lm_eval_args(),
            "--device",
            "cpu",
            "--batch_size",
            "32",
            "--log_samples",
            "--output_path",
            str(scratch / f"eval-{model_dir.name}"),
        ]
    )


def _exported_configs(pair: BenchPair, spec: Path, directory: Path) -> list[Path]:
    from mergescope.merging.candidates import expand, to_mergekit_yaml
    from mergescope.merging.spec import load_sweep
    from mergescope.models.parents import resolve_parents

    parents = resolve_parents(list(pair.parents), pair.base)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for candidate in expand(load_sweep(spec), parents):
        paths.append(directory / f"{candidate.id}.yaml")
        paths[-1].write_text(to_mergekit_yaml(candidate))
    return paths


def run(pair: BenchPair, repeats: int = 5, spec: dict = SPEC) -> dict:
    """Timings of both sides and their ratio; the median of `repeats` mergescope sweeps.

    The mergescope sweeps are interleaved with the naive loop's candidates, so that both sides sample the
    same spells of a shared machine's speed.
    """
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as scratch:
        scratch = Path(scratch)
        spec_file = scratch / "bench.yaml"
        spec_file.write_text(yaml.safe_dump(spec))
        configs = _exported_configs(pair, spec_file, scratch / "configs")
        every = max(1, len(configs) // repeats)
        sweeps, naive = [], []
        for index, config in enumerate(configs):
            if index % every == 0 and len(sweeps) < repeats:
                sweeps.append(timed(sweep_command(pair, spec_file, scratch / f"run-{index}")))
            naive.append(_naive_candidate(config, pair, scratch))
        # mergescope's total also scores its three reference models (parents, base), which the naive loop
        # skips: `speedup` charges them against mergescope; `speedup_like_for_like` times them on both sides.
        references = [_naive_eval(model, pair, scratch) for model in (*pair.parents, pair.base)]
    mergescope = statistics.median(sweeps)
    return {
        "candidates": len(naive),
        "tasks": list(pair.tasks),
        "items_per_task": pair.limit or "all",
        "mergescope_sweep_s": mergescope,
        "mergescope_runs_s": sweeps,
        "naive_total_s": sum(naive),
        "naive_per_candidate_median_s": statistics.median(naive),
        "naive_reference_evals_s": sum(references),
        "speedup": sum(naive) / mergescope,
        "speedup_like_for_like": (sum(naive) + sum(references)) / mergescope,
        "load_average_1min": os.getloadavg()[0],
    }


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    parser = argparse.ArgumentParser()
    parser.add_argument("zoo", nargs="?", default=".cache/test-zoo")
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    print(run(zoo_pair(load_zoo(arguments.zoo)), arguments.repeats))
