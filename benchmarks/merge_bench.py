"""Benchmark: 10 SLERP candidates of the zoo parents through mergescope's fast path vs 10 `mergekit-yaml` calls.

Both sides write 10 loadable model directories from the same 10 exported mergekit YAMLs, in the same run.
mergescope runs in one fresh interpreter (start-up and imports counted, like each `mergekit-yaml` call's);
its clock stops when the 10th directory is written. The in-process times of its merges alone (write-to-disk,
and again in memory without writing) are reported beside it. The outputs
of the two sides are checked to be bitwise equal, so the speed-up is for the same result.

Merge throughput, in GB/s of parent weights read (each merge reads both parents: 2 x parent bytes per merge,
over the wall time of the side, start-up included), is measured again on two ~1 GB parents (the kinship
benchmark's scaled-up zoo Llama, with the zoo's tokenizer files), 2 SLERP merges per side, where it means
more than on the 2.4 MB zoo models.

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


def _candidates(parent_dirs: list[Path], n: int):
    from mergescope.candidates import expand
    from mergescope.config import MethodBlock, SweepSpec
    from mergescope.parents import resolve_parents

    parents = resolve_parents(parent_dirs)
    block = MethodBlock(method="slerp", parameters={"t": {"start": 0.05, "stop": 0.95, "num": n}})
    return expand(SweepSpec(name="bench", methods=[block]), parents)


def _both_sides(candidates, work: Path) -> dict:
    """Seconds of mergescope (one fresh process) and of one `mergekit-yaml` per candidate, and output equality."""
    from mergescope.candidates import export_candidates

    configs = export_candidates(candidates, work / "configs")
    _, fast_started_at, fast_out = _timed([sys.executable, "-c", FAST_PATH, str(work / "fast"), *map(str, configs)])
    cli_s = sum(_timed([str(MERGEKIT_YAML), str(c), str(work / "cli" / c.stem)])[0] for c in configs)
    inner = json.loads(fast_out)
    return {"cli_s": cli_s, "fast_s": inner["written_at"] - fast_started_at, "inner": inner,
            "equal": all(_same_weights(work / "fast" / c.id, work / "cli" / c.id) for c in candidates)}


def _timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds of the command, the epoch time it started at, and its standard output."""
    started, started_at = time.perf_counter(), time.time()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, started_at, done.stdout


def _same_weights(first: Path, second: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    a, b = ({name: tensor for file in sorted(d.glob("*.safetensors")) for name, tensor in load_file(str(file)).items()}
            for d in (first, second))
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def _gb(n_bytes: float, seconds: float) -> float:
    return round(n_bytes / 1e9 / seconds, 3)


def _large_parent_throughput(zoo, work: Path, n: int = 2) -> dict:
    """GB/s of parent weights read, both sides, merging two ~1 GB parents `n` times."""
    import shutil

    from kinship_bench import write_model

    parent_dirs = [work / "a", work / "b"]
    parent_bytes = sum(write_model(directory, parent) for parent, directory in enumerate(parent_dirs, start=1))
    for directory in parent_dirs:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (zoo.model_path("base") / name).is_file():
                shutil.copy(zoo.model_path("base") / name, directory / name)
    sides = _both_sides(_candidates(parent_dirs, n), work / "merges")
    read = n * parent_bytes
    return {"parent_gb_each": round(parent_bytes / 2 / 1e9, 3), "merges": n,
            "mergekit_yaml_s": round(sides["cli_s"], 2), "mergescope_s": round(sides["fast_s"], 2),
            "mergekit_yaml_gb_s": _gb(read, sides["cli_s"]), "mergescope_gb_s": _gb(read, sides["fast_s"]),
            "mergescope_in_process_gb_s": _gb(read, sides["inner"]["write_s"]),
            "speedup": round(sides["cli_s"] / sides["fast_s"], 1), "bitwise_equal": sides["equal"]}


def run(zoo) -> dict:
    """Timings of both sides, their ratio, throughput, and whether their outputs are bitwise equal."""
    parent_dirs = [zoo.model_path("arith"), zoo.model_path("facts")]
    read = N_CANDIDATES * sum((d / "model.safetensors").stat().st_size for d in parent_dirs)
    with tempfile.TemporaryDirectory(prefix="merge-bench-") as scratch:
        sides = _both_sides(_candidates(parent_dirs, N_CANDIDATES), Path(scratch) / "zoo")
        large = _large_parent_throughput(zoo, Path(scratch) / "large")
    inner, cli_s, fast_s = sides["inner"], sides["cli_s"], sides["fast_s"]
    return {
        "candidates": N_CANDIDATES,
        "mergekit_yaml_s": round(cli_s, 2),
        "mergescope_s": round(fast_s, 2),  # start-up, imports, 10 merges and writes; not the in-memory pass
        "mergescope_startup_s": round(inner["startup_s"], 2),
        "mergescope_write_s": round(inner["write_s"], 3),
        "mergescope_in_memory_s": round(inner["in_memory_s"], 3),
        "speedup": round(cli_s / fast_s, 1),
        "speedup_in_process": round(cli_s / inner["write_s"], 1),
        "bitwise_equal": sides["equal"],
        "zoo_gb_s": {"mergekit_yaml": _gb(read, cli_s), "mergescope": _gb(read, fast_s),
                     "mergescope_in_process": _gb(read, inner["write_s"])},
        "two_1gb_parents": large,
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    result = run(load_zoo(sys.argv[1] if len(sys.argv) > 1 else ".cache/test-zoo"))
    print(json.dumps(result, indent=1))
    print(f"{result['candidates']} SLERP merges: mergekit-yaml {result['mergekit_yaml_s']:.1f} s, "
          f"mergescope {result['mergescope_s']:.1f} s (fresh process) -> {result['speedup']}x faster; "
          f"{result['mergescope_write_s']:.2f} s of merging and writing in process ({result['speedup_in_process']}x)")
