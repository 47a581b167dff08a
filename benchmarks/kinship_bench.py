"""Kinship of two ~1 GB parents: mergescope's streaming vs the load-everything computation.

Writes a base and two parents locally: the zoo's Llama layout scaled up (hidden 1024, 15 layers,
vocabulary 32000: 255M float32 parameters, 1.02 GB each), random weights in safetensors shards
with an index. The parents are the base plus a shared and an own random delta, so their task
vectors are kin. Each method runs in its own fresh interpreter, started by a small launcher that
reports its child's peak resident memory (`getrusage(RUSAGE_CHILDREN).ru_maxrss`); the wall time
(interpreter start and imports included) is measured around it. Two
references run the same way: an interpreter that only imports the modules, and one that only reads
the files.

Run: .venv/bin/python benchmarks/kinship_bench.py [WORK_DIR]   (default: a temporary directory)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

VOCAB, HIDDEN, INTERMEDIATE, LAYERS = 32000, 1024, 2816, 15
SHARD_BYTES = 300 * 2**20
BASE_SCALE, SHARED_DELTA, OWN_DELTA = 0.02, 0.002, 0.002

# Each method as a script run in a fresh interpreter, so that its peak memory is its own.
METHODS = {
    "imports only": """
import torch, numpy, safetensors.torch
from mergescope.analysis.kinship import kinship
""",
    "read files only": """
import sys
from pathlib import Path
for directory in sys.argv[1:]:
    for file in sorted(Path(directory).glob("*.safetensors")):
        with open(file, "rb") as handle:
            while handle.read(1 << 24):
                pass
""",
    "streaming (mergescope)": """
import sys
from mergescope.analysis.kinship import kinship
report = kinship(sys.argv[1:3], base=sys.argv[3])
figure = report.pair(*report.models)
print(figure.pearson, figure.cosine, figure.euclidean)
""",
    "load everything": """
import sys
from pathlib import Path
import numpy, safetensors.torch, torch
def load(directory):
    state = {}
    for file in sorted(Path(directory).glob("*.safetensors")):
        state.update(safetensors.torch.load_file(file))
    return state
# As the paper's reference code does: three whole models, then two concatenated task vectors
# (float64 here, for exact figures); the figures use in-place numpy reductions, no further copies.
a, b, base = (load(d) for d in sys.argv[1:4])
names = sorted(base)
x = torch.cat([(a[n] - base[n]).flatten() for n in names]).double().numpy()
y = torch.cat([(b[n] - base[n]).flatten() for n in names]).double().numpy()
xy, xx, yy = x @ y, x @ x, y @ y
cosine, euclidean = xy / numpy.sqrt(xx * yy), numpy.sqrt(xx + yy - 2 * xy)
x -= x.mean()
y -= y.mean()
print(x @ y / numpy.sqrt((x @ x) * (y @ y)), cosine, euclidean)
""",
}


def llama_shapes() -> dict[str, tuple[int, ...]]:
    """Returns tensor name -> shape of the scaled-up zoo Llama (names as transformers saves them)."""
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}."
        for projection in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}self_attn.{projection}.weight"] = (HIDDEN, HIDDEN)
        shapes[f"{prefix}mlp.gate_proj.weight"] = (INTERMEDIATE, HIDDEN)
        shapes[f"{prefix}mlp.up_proj.weight"] = (INTERMEDIATE, HIDDEN)
        shapes[f"{prefix}mlp.down_proj.weight"] = (HIDDEN, INTERMEDIATE)
        shapes[f"{prefix}input_layernorm.weight"] = (HIDDEN,)
        shapes[f"{prefix}post_attention_layernorm.weight"] = (HIDDEN,)
    shapes["model.norm.weight"] = (HIDDEN,)
    shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return shapes


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def model_tensor(position: int, shape: tuple[int, ...], parent: int | None) -> torch.Tensor:
    """Returns one tensor of the base (parent None) or of parent 1 or 2, regenerated from seeds."""
    base = _random(shape, 10_000 + position) * BASE_SCALE
    if parent is None:
        return base
    shared = _random(shape, 20_000 + position) * SHARED_DELTA
    return base + shared + _random(shape, 30_000 * (parent + 1) + position) * OWN_DELTA


def write_model(directory: Path, parent: int | None) -> int:
    """Writes a model in safetensors shards with an index and config.json; returns its bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = total = 0
    for position, (name, shape) in enumerate(llama_shapes().items()):
        tensor = model_tensor(position, shape, parent)
        if size and size + tensor.nbytes > SHARD_BYTES:
            _save_shard(directory, shards[-1], len(shards))
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += tensor.nbytes
        total += tensor.nbytes
    _save_shard(directory, shards[-1], len(shards))
    _write_index(directory, len(shards), total)
    return total


def _save_shard(directory: Path, tensors: dict[str, torch.Tensor], number: int) -> None:
    save_file(tensors, str(directory / f"model-{number:05d}.safetensors"), metadata={"format": "pt"})
    tensors.clear()  # free the shard's tensors before the next one is generated


def _write_index(directory: Path, n_shards: int, total: int) -> None:
    from safetensors import safe_open

    weight_map = {}
    for number in range(1, n_shards + 1):
        file = f"model-{number:05d}.safetensors"
        with safe_open(str(directory / file), framework="pt") as handle:
            weight_map.update({name: file for name in handle.keys()})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1)
    )
    (directory / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": VOCAB,
                "hidden_size": HIDDEN,
                "intermediate_size": INTERMEDIATE,
                "num_hidden_layers": LAYERS,
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "torch_dtype": "float32",
                "tie_word_embeddings": False,
            },
            indent=1,
        )
    )


# Linux carries a process's peak RSS into the children it forks (and across exec), so a method started
# straight from this process would report this process's peak. A fresh, small launcher breaks the chain:
# it runs the method and reports the peak of its only child.
LAUNCHER = """
import resource, subprocess, sys
finished = subprocess.run(sys.argv[1:])
print("peak_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)
sys.exit(finished.returncode)
"""


def measure(script: str, arguments: list[str]) -> dict:
    """Returns the wall time, peak RSS (MiB) and output of `script` run in a fresh interpreter."""
    return measure_command([sys.executable, "-c", script, *arguments])


def measure_command(command: list[str]) -> dict:
    """Returns the wall time, peak RSS (MiB) and output of `command`, run from a fresh launcher."""
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise RuntimeError(finished.stderr.strip().splitlines()[-1])
    *output, peak = finished.stdout.strip().splitlines()
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(int(peak.split()[1]) / 1024, 1),
        "output": " ".join(output),
    }


def run(tmp_dir: str | Path) -> dict:
    """Returns the benchmark's measurements: model sizes, and time and peak memory of each method."""
    tmp_dir = Path(tmp_dir)
    started = time.perf_counter()
    sizes = {name: write_model(tmp_dir / name, parent) for name, parent in (("base", None), ("a", 1), ("b", 2))}
    generate_seconds = time.perf_counter() - started
    arguments = [str(tmp_dir / "a"), str(tmp_dir / "b"), str(tmp_dir / "base")]
    results = {name: measure(script, arguments) for name, script in METHODS.items()}
    return {
        "model_gib": {k: round(v / 2**30, 3) for k, v in sizes.items()},
        "n_params_per_model": sum(torch.Size(s).numel() for s in llama_shapes().values()),
        "generate_seconds": round(generate_seconds, 1),
        "methods": results,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(run(sys.argv[1]), indent=1))
    else:
        with tempfile.TemporaryDirectory(prefix="kinship-bench-") as work:
            print(json.dumps(run(work), indent=1))
