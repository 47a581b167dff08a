"""Resolve parent models and check, before any work, that they can be merged."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from safetensors import safe_open

from mergescope.errors import ConfigError, did_you_mean
from mergescope.models import hub
from mergescope.runs.records import ModelRef, ParentSet

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
ARCHITECTURE_KEYS = ("architectures", "model_type")  # config.json keys naming the model class
# config.json keys fixing every tensor's shape (for the architectures transformers ships; absent keys match)
SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)


def resolve_model(path: str | Path, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> ModelRef:
    """A checked reference to the model directory at `path` (made absolute: mergekit reads relative
    paths as hub ids), or to the hub snapshot of the model id `path` names (org/name[@revision])."""
    if hub.is_hub_id(path):
        snapshot, revision = hub.snapshot(str(path), allow_pickle=allow_pickle)
        return replace(
            resolve_model(snapshot, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code),
            name=hub.model_name(path),
            hub=revision,
        )
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir():
        raise ConfigError(
            f"{path}: not a directory",
            hint="give the path of a Hugging Face model directory, or a hub id org/name[@revision]",
        )
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ConfigError(f"{path}: no config.json, so this is not a model directory")
    config = _read_json(config_file)
    if config.get("auto_map") and not trust_remote_code:
        raise ConfigError(
            f"{path}: config.json asks for remote code (auto_map); refused",
            hint="pass --trust-remote-code only if you trust this model's code",
        )
    if not weight_files(directory):
        pickled = [f.name for f in directory.iterdir() if f.suffix in PICKLE_SUFFIXES]
        if pickled and not allow_pickle:
            raise ConfigError(
                f"{path}: only pickled weights ({pickled[0]}); loading them can run arbitrary code",
                hint="convert to safetensors, or pass --allow-pickle if you trust the file",
            )
        if not pickled:
            raise ConfigError(f"{path}: no weights (*.safetensors) in the model directory")
    return ModelRef(name=directory.name, path=directory)


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a model directory, in shard order."""
    return sorted(directory.glob("*.safetensors"))


def tensor_layout(model: ModelRef) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every tensor's (shape, dtype), read from safetensors headers without loading any weights."""
    layout: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in weight_files(model.path):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    tensor = handle.get_slice(name)
                    layout[name] = (tuple(tensor.get_shape()), tensor.get_dtype())
        except Exception as error:  # safetensors raises several types for a damaged header
            raise ConfigError(
                f"{file}: unreadable safetensors file ({error})", hint="re-save or re-download it"
            ) from None
    return layout


def check_finite(models: Sequence[ModelRef], already_checked: Collection[str] = ()) -> tuple[str, ...]:
    """The weight fingerprints of `models`, each model's weights read tensor by tensor (one block in memory) unless
    its fingerprint is among `already_checked`; ConfigError naming the first tensor holding NaN or inf."""
    fingerprints = tuple(weights_fingerprint(model) for model in models)
    for model, fingerprint in zip(models, fingerprints, strict=True):
        if fingerprint not in already_checked and (found := _nonfinite_tensor(model)):
            name, kind = found
            raise ConfigError(
                f"{model.name} ({model.path}): tensor {name} holds {kind} values; merging it would "
                "spread them into every candidate",
                hint="fix or re-download the model, or pass --allow-nonfinite to merge it anyway",
            )
    return fingerprints


def weights_fingerprint(model: ModelRef) -> str:
    """What identifies a model's weights as checked: every weight file's path, size and modification time."""
    files = [(str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in weight_files(model.path)]
    return json.dumps(files)


def _nonfinite_tensor(model: ModelRef) -> tuple[str, str] | None:
    """The first floating-point tensor (in file order) holding NaN or inf, and which ("NaN" or "inf"); else None."""
    import torch

    from mergescope.analysis.weights import weight_index

    if not weight_files(model.path):  # pickled weights (--allow-pickle): not read before the merge unpickles them
        return None
    index = weight_index(model.path, model.name)
    for name in sorted(index.shapes, key=lambda tensor: (str(index.files[tensor]), tensor)):
        for rows in index.row_blocks(name):
            block = index.read(name, dtype=None, rows=rows)
            # a NaN or inf makes the sum NaN or inf: one cheap reduction per block (3-5x faster than isfinite
            # here), confirmed element-wise only when it fires (a huge finite sum may overflow)
            if block.is_floating_point() and not torch.isfinite(block.sum()) and not torch.isfinite(block).all():
                return name, "NaN" if torch.isnan(block).any() else "inf"
    return None


def check_compatible(parents: ParentSet) -> None:
    """Raise ConfigError naming the first difference that stops these models from merging."""
    models = [*parents.parents, *([parents.base] if parents.base else [])]
    reference = models[0]
    reference_layout = tensor_layout(reference) if weight_files(reference.path) else {}
    reference_vocab = _vocabulary(reference.path)
    for other in models[1:]:
        difference = config_difference(other, reference, (*ARCHITECTURE_KEYS, "vocab_size"))
        if difference:
            key, value, reference_value = difference
            raise ConfigError(
                f"{other.name} and {reference.name} differ in {key}: {value!r} vs {reference_value!r}; "
                "they cannot be merged"
            )
        if reference_layout and weight_files(other.path):
            _check_tensors(reference, reference_layout, other, tensor_layout(other))
        vocab = _vocabulary(other.path)
        if reference_vocab is not None and vocab is not None and vocab != reference_vocab:
            raise ConfigError(f"{other.name} and {reference.name} have different tokenizer vocabularies")


def config_difference(a: ModelRef, b: ModelRef, keys: tuple[str, ...]) -> tuple[str, object, object] | None:
    """The first of `keys` whose config.json values differ between the two models: (key, a's, b's), or None."""
    a_config, b_config = _read_json(a.path / "config.json"), _read_json(b.path / "config.json")
    return next(
        ((key, a_config.get(key), b_config.get(key)) for key in keys if a_config.get(key) != b_config.get(key)), None
    )


def _check_tensors(a: ModelRef, a_layout: dict, b: ModelRef, b_layout: dict) -> None:
    """Raise ConfigError at the first tensor (in name order) that one model lacks or holds otherwise."""
    for name in sorted(set(a_layout) | set(b_layout)):
        if name not in a_layout or name not in b_layout:
            missing_from = a.name if name not in a_layout else b.name
            raise ConfigError(f"tensor {name} is missing from {missing_from}; the parents' tensors differ")
        (a_shape, a_dtype), (b_shape, b_dtype) = a_layout[name], b_layout[name]
        if a_shape != b_shape:
            raise ConfigError(
                f"tensor {name} has shape {list(a_shape)} in {a.name} "
                f"but {list(b_shape)} in {b.name}; the parents cannot be merged"
            )
        if a_dtype != b_dtype:
            raise ConfigError(
                f"tensor {name} is {a_dtype} in {a.name} but {b_dtype} in {b.name}",
                hint="convert the parents to one dtype before merging",
            )


def chat_templates(directory: Path) -> dict[str, str]:
    """The chat templates a model's tokenizer files hold, by name ("default": the main one); {} when none.

    Read from the files transformers saves them in (chat_template.jinja, additional_chat_templates/*.jinja,
    chat_template.json, or "chat_template" in tokenizer_config.json: one string or a list of named ones),
    without loading the tokenizer.
    """
    directory = Path(directory)
    templates = {file.stem: file.read_text() for file in sorted(directory.glob("additional_chat_templates/*.jinja"))}
    config_file, json_file, jinja_file = (
        directory / name for name in ("tokenizer_config.json", "chat_template.json", "chat_template.jinja")
    )
    stored = _read_json(config_file).get("chat_template") if config_file.is_file() else None
    if json_file.is_file():
        stored = _read_json(json_file).get("chat_template", stored)
    if isinstance(stored, list):
        templates.update({entry["name"]: entry["template"] for entry in stored})
    elif isinstance(stored, str):
        templates["default"] = stored
    if jinja_file.is_file():
        templates["default"] = jinja_file.read_text()
    return templates


def check_chat_template(models: Sequence[ModelRef], template: bool | str) -> None:
    """Raise ConfigError naming the first model without the chat template `template` asks for (True: any)."""
    if not template:
        return
    for model in models:
        found = chat_templates(model.path)
        if not found:
            raise ConfigError(
                f"{model.name} ({model.path}) has no chat template, so --apply-chat-template cannot be applied",
                hint="add one to its tokenizer (chat_template.jinja), or leave out --apply-chat-template",
            )
        if isinstance(template, str) and template not in found:
            raise ConfigError(
                f"{model.name} has no chat template named {template!r}", hint=did_you_mean(template, set(found))
            )


def _vocabulary(directory: Path) -> dict | None:
    tokenizer_file = directory / "tokenizer.json"
    if not tokenizer_file.is_file():
        return None
    return _read_json(tokenizer_file).get("model", {}).get("vocab")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: unreadable JSON ({error})") from None


def resolve_parents(
    parents: Sequence[str | Path],
    base: str | Path | None = None,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> ParentSet:
    """The checked, compatible parent set for a sweep."""
    if len(parents) < 2:
        raise ConfigError(f"a sweep needs at least two parents, got {len(parents)}", hint="pass --parents A B")
    options = {"allow_pickle": allow_pickle, "trust_remote_code": trust_remote_code}
    refs = tuple(resolve_model(p, **options) for p in parents)
    if len({r.path for r in refs}) != len(refs):
        raise ConfigError("a parent is listed twice", hint="give each parent once")
    base_ref = resolve_model(base, **options) if base else None
    if base_ref and base_ref.path in {r.path for r in refs}:
        raise ConfigError(f"the base {base} is also listed as a parent")
    refs = _unique_names(refs)
    parent_set = ParentSet(parents=refs, base=base_ref, architecture=_architecture(refs[0]))
    check_compatible(parent_set)
    return parent_set


def _unique_names(refs: tuple[ModelRef, ...]) -> tuple[ModelRef, ...]:
    names = [r.name for r in refs]
    if len(set(names)) == len(names):
        return refs
    return tuple(replace(r, name=f"{r.name}-{i + 1}") for i, r in enumerate(refs))


def _architecture(model: ModelRef) -> str:
    architectures = _read_json(model.path / "config.json").get("architectures") or ["unknown"]
    return architectures[0]
