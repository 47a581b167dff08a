"""Benchmark: 10 SLERP candidates of the zoo parents through mergescope's fast path vs 10 `mergekit-yaml` calls.

Both sides write 10 loadable model directories from the same 10 exported mergekit YAMLs, in the same run.
mergescope runs in one fresh interpreter (start-up and imports counted, like each `mergekit-yaml` call's);
its clock stops when the 10th directory is written. The in-process times of its merges alone (write-to-disk,
and again in memory without writing) are reported beside it. The outputs
of the two sides are checked to be bitwise equal, so the speed-up is for the same result.

On two ~1 GB parents and a base (the kinship benchmark's scaled-up zoo Llama, with the zoo's tokenizer files)
it measures what the 2.4 MB zoo models cannot show:
- memory: the peak RSS of a 10-candidate SLERP sweep's merge stage (`merge_to_disk` per candidate, as a sweep's
  worker calls it), run for its first 2 and for all 10 candidates, each in a fresh process, against the peak
  of one `mergekit-yaml` call on the same merges (each run from a small launcher that reports its only child's
  peak, `RUSAGE_CHILDREN`); beside them, an interpreter that only imports what a merge imports, and
  `--max-memory`'s estimate of the merge stage (resources.merge_stage_bytes);
- throughput, in GB/s of parent weights read (each merge reads both parents: 2 x parent bytes per merge, over
  the wall time of the side, start-up included): the 2-candidate run against two `mergekit-yaml` calls, whose
  outputs are checked bitwise equal.

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

from bench_pair import BenchPair, zoo_pair

N_CANDIDATES = 10
MERGEKIT_YAML = Path(sys.executable).with_name("mergekit-yaml")

# The mergescope side: one interpreter merges every exported config (argv[3:]) into argv[1] as a sweep's worker
# does, then again in memory if argv[2] is "in-memory"; prints its in-process timings.
FAST_PATH = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
from mergescope.merging.candidates import from_mergekit_yaml
from mergescope.merging.merge import merge_in_memory, merge_to_disk
candidates = [from_mergekit_yaml(Path(p)) for p in sys.argv[3:]]
write_started = time.perf_counter()
for candidate in candidates:
    merge_to_disk(candidate, Path(sys.argv[1]))
written, written_at = time.perf_counter(), time.time()
for candidate in candidates if sys.argv[2] == "in-memory" else ():
    merge_in_memory(candidate)
print(json.dumps({"startup_s": write_started - started, "write_s": written - write_started,
                  "in_memory_s": time.perf_counter() - written, "written_at": written_at}))
"""
# What a merge imports, and nothing else: the floor under every peak below.
IMPORTS_ONLY = """
import mergescope.merging.merge, mergekit.merge, mergekit.plan, transformers.trainer_utils
"""


def _candidates(parents, n: int):
    from mergescope.merging.candidates import expand
    from mergescope.merging.spec import MethodBlock, SweepSpec

    block = MethodBlock(method="slerp", parameters={"t": {"start": 0.05, "stop": 0.95, "num": n}})
    return expand(SweepSpec(name="bench", methods=[block]), parents)


def _both_sides(candidates, work: Path) -> dict:
    """Seconds of mergescope (one fresh process) and of one `mergekit-yaml` per candidate, and output equality."""
    from mergescope.merging.candidates import export_candidates

    configs = export_candidates(candidates, work / "configs")
    command = [sys.executable, "-c", FAST_PATH, str(work / "fast"), "in-memory", *map(str, configs)]
    _, fast_started_at, fast_out = _timed(command)
    cli_s = sum(_timed([str(MERGEKIT_YAML), str(c), str(work / "cli" / c.stem)])[0] for c in configs)
    inner = json.loads(fast_out)
    return {
        "cli_s": cli_s,
        "fast_s": inner["written_at"] - fast_started_at,
        "inner": inner,
        "equal": all(_same_weights(work / "fast" / c.id, work / "cli" / c.id) for c in candidates),
    }


def _timed(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds of the command, the epoch time it started at, and its standard output."""
    started, started_at = time.perf_counter(), time.time()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, started_at, done.stdout


def _same_weights(first: Path, second: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    a, b = (
        {name: tensor for file in sorted(d.glob("*.safetensors")) for name, tensor in load_file(str(file)).items()}
        for d in (first, second)
    )
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def _gb(n_bytes: float, seconds: float) -> float:
    return round(n_bytes / 1e9 / seconds, 3)


def _large_parents(tokenizer_dir: Path, work: Path, sizes: tuple[int, ...] = (2, 10)) -> dict:
    """Peak RSS of the merge stage for each of `sizes` candidates and of one mergekit-yaml merge; GB/s of both."""
    from kinship_bench import measure_command

    from mergescope.merging.candidates import export_candidates
    from mergescope.models.resources import merge_stage_bytes

    parents, parent_bytes = _write_large_parents(tokenizer_dir, work)
    candidates = _candidates(parents, max(sizes))
    configs = [str(c) for c in export_candidates(candidates, work / "configs")]
    stage = {
        n: measure_command([sys.executable, "-c", FAST_PATH, str(work / f"merged-{n}"), "to-disk", *configs[:n]])
        for n in sizes
    }
    cli = [
        measure_command([str(MERGEKIT_YAML), config, str(work / "cli" / Path(config).stem)]) for config in configs[:2]
    ]
    first = min(sizes)
    equal = all(_same_weights(work / f"merged-{first}" / c.id, work / "cli" / c.id) for c in candidates[:2])
    read, cli_s, fast_s = 2 * parent_bytes, sum(r["seconds"] for r in cli), stage[first]["seconds"]
    cli_peak = max(r["peak_rss_mib"] for r in cli)
    return {
        "parent_gb_each": round(parent_bytes / 1e9, 3),
        "peak_rss_mib": {
            "mergekit_yaml_one_merge": cli_peak,
            **{f"mergescope_{n}_candidates": stage[n]["peak_rss_mib"] for n in sizes},
            "imports_only": measure_command([sys.executable, "-c", IMPORTS_ONLY])["peak_rss_mib"],
            "max_memory_estimate": round(merge_stage_bytes(parents, "float32") / 2**20, 1),
        },
        "peak_ratio_to_mergekit_yaml": {n: round(stage[n]["peak_rss_mib"] / cli_peak, 2) for n in sizes},
        "seconds": {
            "mergekit_yaml_2_merges": round(cli_s, 2),
            **{f"mergescope_{n}_candidates": stage[n]["seconds"] for n in sizes},
        },
        "gb_s_2_merges": {"mergekit_yaml": _gb(read, cli_s), "mergescope": _gb(read, fast_s)},
        "speedup_2_merges": round(cli_s / fast_s, 1),
        "bitwise_equal": equal,
    }


def _write_large_parents(tokenizer_dir: Path, work: Path):
    """The resolved parent set (a, b, base: scaled-up zoo Llamas with the tokenizer files of `tokenizer_dir`, a
    zoo model) and a parent's bytes."""
    import shutil

    from kinship_bench import write_model

    from mergescope.models.parents import resolve_parents

    parent_bytes = 0
    for name, parent in (("a", 1), ("b", 2), ("base", None)):
        parent_bytes = write_model(work / name, parent)
        for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tokenizer_dir / file).is_file():
                shutil.copy(tokenizer_dir / file, work / name / file)
    return resolve_parents([work / "a", work / "b"], work / "base"), parent_bytes


def run(pair: BenchPair, n_candidates: int = N_CANDIDATES, scaled_up: bool = True) -> dict:
    """Timings of both sides, their ratio, throughput, and whether their outputs are bitwise equal; with
    `scaled_up`, also memory and throughput on two ~1 GB parents (scaled-up zoo Llamas: `pair` a zoo's)."""
    from mergescope.models.parents import resolve_parents

    parent_dirs = list(pair.parents)
    read = n_candidates * sum(f.stat().st_size for d in parent_dirs for f in d.glob("*.safetensors"))
    with tempfile.TemporaryDirectory(prefix="merge-bench-") as scratch:
        sides = _both_sides(_candidates(resolve_parents(parent_dirs), n_candidates), Path(scratch) / pair.name)
        large = _large_parents(pair.base, Path(scratch) / "large") if scaled_up else None
    inner, cli_s, fast_s = sides["inner"], sides["cli_s"], sides["fast_s"]
    return {
        "candidates": n_candidates,
        "parents_dtype": pair.dtype,
        "parent_gb_each": round(read / n_candidates / 2 / 1e9, 4),
        "mergekit_yaml_s": round(cli_s, 2),
        "mergescope_s": round(fast_s, 2),  # start-up, imports, the merges and writes; not the in-memory pass
        "mergescope_startup_s": round(inner["startup_s"], 2),
        "mergescope_write_s": round(inner["write_s"], 3),
        "mergescope_in_memory_s": round(inner["in_memory_s"], 3),
        "speedup": round(cli_s / fast_s, 1),
        "speedup_in_process": round(cli_s / inner["write_s"], 1),
        "bitwise_equal": sides["equal"],
        f"{pair.name}_gb_s": {
            "mergekit_yaml": _gb(read, cli_s),
            "mergescope": _gb(read, fast_s),
            "mergescope_in_process": _gb(read, inner["write_s"]),
        },
        **({"two_1gb_parents_and_a_base": large} if large else {}),
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


if __name__ == "__main__":
    from mergescope.zoo import load_zoo

    result = run(zoo_pair(load_zoo(sys.argv[1] if len(sys.argv) > 1 else ".cache/test-zoo")))
    print(json.dumps(result, indent=1))
    print(
        f"{result['candidates']} SLERP merges: mergekit-yaml {result['mergekit_yaml_s']:.1f} s, "
        f"mergescope {result['mergescope_s']:.1f} s (fresh process) -> {result['speedup']}x faster; "
        f"{result['mergescope_write_s']:.2f} s of merging and writing in process ({result['speedup_in_process']}x)"
    )
