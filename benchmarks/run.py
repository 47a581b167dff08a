"""`make bench`: run every benchmark side by side on the zoo and write benchmarks/RESULTS.md.

Each benchmark compares mergescope with the obvious alternative in the same run and reports ratios; see the
docstring of each module for what exactly is timed. A benchmark that cannot run here (vLLM not installed)
is reported as skipped with the reason. With `--real DIR` (the real model's parents, `mergescope models
parents DIR`, built when missing), the sweep, merge and vllm benchmarks run again on SmolLM2-135M-Instruct's
bf16 children, smaller (REAL_BENCHMARKS): its chat evaluation costs ~100x a zoo model's.

    python benchmarks/run.py [--zoo .cache/zoo128] [--real .cache/smollm2] [--only sweep,merge,kinship,vllm,...]

`--only` takes section names: `sweep` runs the zoo's and the real model's sweep benchmark, `sweep (smollm2)` only
the latter. Sections not run this time are kept in RESULTS.md as they were, each with the date it was measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import device_bench  # noqa: E402
import kinship_bench  # noqa: E402
import merge_bench  # noqa: E402
import search_bench  # noqa: E402
import sweep_bench  # noqa: E402
import vllm_bench  # noqa: E402
from bench_pair import BenchPair, real_pair, zoo_pair  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _kinship(_pair) -> dict:
    with tempfile.TemporaryDirectory(prefix="kinship-bench-") as work:
        return kinship_bench.run(work)


BENCHMARKS = {
    "sweep": (
        "End-to-end sweep, 10 candidates x 2 tasks: mergescope vs mergekit-yaml + lm_eval CLI per candidate",
        sweep_bench.run,
    ),
    "merge": (
        "10 SLERP merges: mergescope in process vs 10 mergekit-yaml calls; merge-stage peak RSS (2 and 10 "
        "candidates) and GB/s on two 1 GB parents and a base",
        merge_bench.run,
    ),
    "kinship": ("Kinship of two ~1 GB models: streaming vs load-everything", _kinship),
    "vllm": ("10 candidates on one live vLLM engine with weight swaps vs a fresh engine each", vllm_bench.run),
    "search": (
        "Evaluations a tpe / cmaes / random search needs to reach the best objective of a 100-point grid (5 seeds);"
        " a search's time with a fitness subset against every item",
        search_bench.run,
    ),
    "device": (
        "The same sweep (10 candidates x 2 tasks, hf backend) on the GPU vs on the same machine's CPU",
        device_bench.run,
    ),
}


REAL_BENCHMARKS = {
    "sweep": (
        "End-to-end sweep, 4 candidates x 20 chat questions (bf16, chat template, generation): mergescope vs "
        "mergekit-yaml + lm_eval CLI per candidate",
        lambda pair: sweep_bench.run(pair, repeats=1, spec=sweep_bench.REAL_SPEC),
    ),
    "merge": (
        "4 SLERP merges of two bf16 parents: mergescope in process vs 4 mergekit-yaml calls; GB/s",
        lambda pair: merge_bench.run(pair, n_candidates=4, scaled_up=False),
    ),
    "vllm": (
        "4 candidates on one live vLLM engine with weight swaps vs a fresh engine each (bf16)",
        lambda pair: vllm_bench.run(pair, n_candidates=4),
    ),
}


def machine() -> str:
    """A one-line description of the machine the numbers come from."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, {platform.system()} {platform.machine()}, "
        f"python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zoo", default=".cache/zoo128")
    parser.add_argument("--real", default=None, help="the real model's parents (mergescope models parents DIR)")
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    arguments = parser.parse_args()
    from mergescope.zoo import build_zoo, load_zoo

    zoo_dir = Path(arguments.zoo)
    zoo = load_zoo(zoo_dir) if (zoo_dir / "zoo.json").is_file() else build_zoo(zoo_dir)
    runs: list[tuple[str, str, Callable[[BenchPair], dict], BenchPair]] = [
        (name, title, function, zoo_pair(zoo)) for name, (title, function) in BENCHMARKS.items()
    ]
    if arguments.real:
        from mergescope.zoo.real import ensure_parents

        ensure_parents(Path(arguments.real))
        pair = real_pair(Path(arguments.real))
        runs += [(name, title, function, pair) for name, (title, function) in REAL_BENCHMARKS.items()]
    sections = _sections()
    for name, title, function, pair in runs:
        section = name if pair.name == "zoo" else f"{name} ({pair.name})"
        if not any(wanted.strip() in (name, section) for wanted in arguments.only.split(",")):
            continue
        print(f"== {section}: {title}", flush=True)
        started = time.perf_counter()
        try:
            result = function(pair)
        except Exception as error:  # a benchmark that cannot run here is reported, not fatal to the others
            result = {"skipped": f"{type(error).__name__}: {error}"}
        print(json.dumps(result, indent=1), flush=True)
        sections[section] = "\n".join(
            [
                f"## {section}: {title}\n",
                f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; took "
                f"{time.perf_counter() - started:.0f} s.\n",
                "```json",
                json.dumps(result, indent=1),
                "```\n",
            ]
        )
    header = "# Benchmark results\n\nProduced by `make bench` (benchmarks/run.py); each section is one benchmark run.\n"
    RESULTS.write_text("\n".join([header, *sections.values()]) + _history())
    print(f"written {RESULTS}")


HISTORY_MARK = "<!-- measurement-history"


def _history() -> str:
    """The hand-kept measurement history at the end of RESULTS.md, from its marker on (kept as it is)."""
    text = RESULTS.read_text() if RESULTS.is_file() else ""
    start = text.find(HISTORY_MARK)
    return "" if start < 0 else "\n" + text[start:]


def _sections() -> dict[str, str]:
    """RESULTS.md's measured sections by name ("sweep", "sweep (smollm2)" ...), in their order: those not run
    again are written back as they were."""
    text = RESULTS.read_text() if RESULTS.is_file() else ""
    measured = text[: text.find(HISTORY_MARK)] if HISTORY_MARK in text else text
    return {chunk.split(":", 1)[0]: "## " + chunk.rstrip() + "\n" for chunk in measured.split("\n## ")[1:]}


if __name__ == "__main__":
    main()
