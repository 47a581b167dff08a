"""`make bench`: run every benchmark side by side on the zoo and write benchmarks/RESULTS.md.

Each benchmark compares mergescope with the obvious alternative in the same run and reports ratios; see the
docstring of each module for what exactly is timed. A benchmark that cannot run here (vLLM not installed)
is reported as skipped with the reason.

    python benchmarks/run.py [--zoo .cache/zoo128] [--only sweep,merge,kinship,vllm,search,device]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import device_bench  # noqa: E402
import kinship_bench  # noqa: E402
import merge_bench  # noqa: E402
import search_bench  # noqa: E402
import sweep_bench  # noqa: E402
import vllm_bench  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def _kinship(_zoo) -> dict:
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
    parser.add_argument("--only", default=",".join(BENCHMARKS))
    arguments = parser.parse_args()
    from mergescope.zoo import build_zoo, load_zoo

    zoo_dir = Path(arguments.zoo)
    zoo = load_zoo(zoo_dir) if (zoo_dir / "zoo.json").is_file() else build_zoo(zoo_dir)
    lines = [
        "# Benchmark results\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on: {machine()}.\n",
        "Produced by `make bench` (benchmarks/run.py); each section is one benchmark module, run in one go.\n",
    ]
    for name in arguments.only.split(","):
        title, function = BENCHMARKS[name]
        print(f"== {name}: {title}", flush=True)
        started = time.perf_counter()
        try:
            result = function(zoo)
        except Exception as error:  # a benchmark that cannot run here is reported, not fatal to the others
            result = {"skipped": f"{type(error).__name__}: {error}"}
        print(json.dumps(result, indent=1), flush=True)
        lines += [
            f"\n## {name}: {title}\n",
            f"Took {time.perf_counter() - started:.0f} s.\n",
            "```json",
            json.dumps(result, indent=1),
            "```",
        ]
    RESULTS.write_text("\n".join(lines) + "\n" + _history())
    print(f"written {RESULTS}")


HISTORY_MARK = "<!-- measurement-history"


def _history() -> str:
    """The hand-kept measurement history at the end of RESULTS.md, from its marker on (kept as it is)."""
    text = RESULTS.read_text() if RESULTS.is_file() else ""
    start = text.find(HISTORY_MARK)
    return "" if start < 0 else "\n" + text[start:]


if __name__ == "__main__":
    main()
