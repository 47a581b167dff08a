"""Benchmark: 10 SLERP candidates of the zoo parents through mergescope's fast path vs 10 `mergekit-yaml` calls.

Both sides write 10 loadable model directories from the same 10 exported mergekit YAMLs, in the same run.
mergescope runs in one fresh interpreter (start-up and imports counted, like each `mergekit-yaml` call's);
its clock stops when the 10th directory is written. The in-process times of its merges alone (write-to-disk,
and again in memory without writing) are reported beside it. The outputs
of the two sides are checked to be bitwise equal, so the speed-up is for the same result.

    python benchmarks/merge_bench.py [ZOO_DIR]      # default: .cache/test-zoo
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CANDIDATES = 10
MERGEKIT_YAML = Path(sys.executable).with_name("mergekit-yaml")

# The mergescope side: one interpreter merges every exported config; prints its in-process timings.
FAST_PATH = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from mergescope.candidates import from_mergekit_yaml
from mergescope.merge import Merger
candidates = [from_mergekit_yaml(Path(p)) for p in sys.argv[2:]]
merger = Merger(cache_size=0)
write_started = time.perf_counter()
for candidate in candidates:
    merger.write(candidate, Path(sys.argv[1]) / candidate.id)
written, written_at = time.perf_counter(), time.time()
for candidate in candidates:
    merger.merge(candidate)
print(json.dumps({"startup_s": write_started - started, "write_s": written - write_started,
                  "in_memory_s": time.perf_counter() - written, "written_at": written_at}))
"""


def _candidates(zoo):
    from mergescope.candidates import expand
    from mergescope.config import MethodBlock, SweepSpec
    from mergescope.parents import resolve_parents

    parents = resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")])
    block = MethodBlock(method="slerp", parameters={"t": {"start": 0.05, "stop": 0.95, "num": N_CANDIDATES}})
    return expand(SweepSpec(name="bench", methods=[block]), parents)


def _timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds of the command, the epoch time it started at, and its standard output."""
    started, started_at = time.perf_counter(), time.time()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, started_at, done.stdout


def _same_weights(first: Path, second: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(next(d.glob("*.safetensors")))) for d in (first, second))
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def run(zoo) -> dict:
    """Timings of both sides, their ratio, and whether their outputs are bitwise equal."""
    from mergescope.candidates import export_candidates

    candidates = _candidates(zoo)
    with tempfile.TemporaryDirectory(prefix="merge-bench-") as scratch:
        work = Path(scratch)
        configs = export_candidates(candidates, work / "configs")
        _, fast_started_at, fast_out = _timed([sys.executable, "-c", FAST_PATH, str(work / "fast"), *map(str, configs)])
        cli_s = sum(_timed([str(MERGEKIT_YAML), str(c), str(work / "cli" / c.stem)])[0] for c in configs)
        equal = all(_same_weights(work / "fast" / c.id, work / "cli" / c.id) for c in candidates)
    inner = json.loads(fast_out)
    fast_s = inner["written_at"] - fast_started_at  # start-up, imports, 10 merges and writes; not the in-memory pass
    return {
        "candidates": len(candidates),
        "mergekit_yaml_s": round(cli_s, 2),
        "mergescope_s": round(fast_s, 2),
        "mergescope_startup_s": round(inner["startup_s"], 2),
        "mergescope_write_s": round(inner["write_s"], 3),
        "mergescope_in_memory_s": round(inner["in_memory_s"], 3),
        "speedup": round(cli_s / fast_s, 1),
        "speedup_in_process": round(cli_s / inner["write_s"], 1),
        "bitwise_equal": equal,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    result = run(load_zoo(sys.argv[1] if len(sys.argv) > 1 else ".cache/test-zoo"))
    print(json.dumps(result, indent=1))
    print(f"{result['candidates']} SLERP merges: mergekit-yaml {result['mergekit_yaml_s']:.1f} s, "
          f"mergescope {result['mergescope_s']:.1f} s (fresh process) -> {result['speedup']}x faster; "
          f"{result['mergescope_write_s']:.2f} s of merging and writing in process ({result['speedup_in_process']}x)")
