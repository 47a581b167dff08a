"""Models named by Hugging Face Hub ids (`org/name`, `org/name@revision`): resolved to local snapshot folders.

The one module that talks to huggingface_hub. A model id becomes the folder of its snapshot in the hub cache
(`$HF_HUB_CACHE/models--org--name/snapshots/SHA/`) through `snapshot_download`, which answers from the cache
alone under HF_HUB_OFFLINE=1 and takes tokens from their usual places (HF_TOKEN, `hf auth login`); mergescope
never reads, passes or prints a token. Only weights in safetensors, configs and tokenizer files are fetched;
pickled weights only where a repository has no safetensors and the user allowed pickles. A path that exists
always wins over an id, so local directories behave as before. `add_to_cache` lays a model directory out in that
cache under an id (how packaged models, and the tests' zoo models, become hub ids offline).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from mergescope.errors import ConfigError, MergescopeError
from mergescope.runs.records import HubRevision

# What a model needs besides its weights: configs (and the shard index), tokenizer files (sentencepiece *.model,
# vocab and merges *.txt) and chat templates saved beside the tokenizer (*.jinja)
CONFIG_FILES = ("*.json", "*.model", "*.txt", "*.jinja")
SAFETENSORS = "*.safetensors"
SHARD_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt")
# org/name[@revision]; a revision may hold slashes ("refs/pr/1"). Exactly one slash before the "@": "a/b/c" is a path.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[^@\s]+))?")
DEFAULT_REVISION = "main"


def is_hub_id(text: str | Path) -> bool:
    """Whether `text` names a hub model: `org/name[@revision]`, and no file or folder of that name exists here."""
    match = HUB_ID.fullmatch(str(text))
    if match is None or Path(str(text)).expanduser().exists():
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(match["repo"])
    except HFValidationError:
        return False
    return True


def model_name(text: str | Path) -> str:
    """A short name for a model: the repository name of a hub id, else the directory's name."""
    match = HUB_ID.fullmatch(str(text))
    return match["repo"].split("/")[1] if match and is_hub_id(text) else Path(text).expanduser().resolve().name


def local_path(text: str | Path) -> Path:
    """The directory a model path or hub id names (a hub id's snapshot, fetched unless cached or offline)."""
    return snapshot(str(text))[0] if is_hub_id(text) else Path(text)


def snapshot(model_id: str, *, allow_pickle: bool = False) -> tuple[Path, HubRevision]:
    """The local snapshot folder of hub id `model_id` and the commit it resolved to; ConfigError when it cannot
    be had (not cached offline, no such repository or revision, gated, only pickled weights without leave)."""
    match = HUB_ID.fullmatch(model_id)
    if match is None:
        raise ConfigError(f"{model_id!r} is not a hub id", hint="write it as org/name or org/name@revision")
    repo_id, revision = match["repo"], match["revision"] or DEFAULT_REVISION
    folder = _download(model_id, repo_id, revision, CONFIG_FILES)
    sha = folder.name  # later downloads ask for this very commit, even if the branch moves meanwhile
    folder = _download(model_id, repo_id, sha, _safetensors_files(folder))
    if not any(folder.glob(SAFETENSORS)):
        pickled = _pickled_files(repo_id, folder)
        if pickled and not allow_pickle:
            raise ConfigError(
                f"{model_id}: the repository holds only pickled weights ({pickled[0]}); loading them "
                "can run arbitrary code",
                hint="use a revision with safetensors weights, or pass --allow-pickle if you trust it",
            )
        if pickled:
            folder = _download(model_id, repo_id, sha, PICKLED_WEIGHTS)
    return folder, HubRevision(repo_id=repo_id, revision=revision, sha=sha)


def _safetensors_files(folder: Path) -> tuple[str, ...]:
    """The weight files to fetch: the shards the index lists where there is one (some repositories also ship a
    second copy in another layout, e.g. Mistral's consolidated.safetensors), else every *.safetensors."""
    index = folder / SHARD_INDEX
    if not index.is_file():
        return (SAFETENSORS,)
    try:
        return tuple(sorted(set(json.loads(index.read_text())["weight_map"].values())))
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as error:
        raise ConfigError(f"{index}: unreadable shard index ({error})", hint="re-download the model") from None


def _download(model_id: str, repo_id: str, revision: str, patterns: tuple[str, ...]) -> Path:
    """`snapshot_download` of the files matching `patterns`, its errors turned into one-line MergescopeErrors."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=list(patterns)))
    except Exception as error:  # huggingface_hub's errors are mapped by type; anything else is a real bug
        mapped = _mapped_error(error, model_id, repo_id, revision)
        if mapped is None:
            raise
        raise mapped from None


def _pickled_files(repo_id: str, folder: Path) -> list[str]:
    """The pickled weight files of the repository at this commit: in its snapshot folder, or in the file listing
    huggingface_hub cached when it fetched the snapshot (pickles are listed there though not downloaded)."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        names = [file.path for file in get_cached_repo_tree(repo_id, revision=folder.name)]
    except CachedRepoTreeNotFoundError:  # a cache filled by other means: its folder is all there is to see
        names = [file.name for file in folder.iterdir()]
    return sorted(name for name in names if any(Path(name).match(pattern) for pattern in PICKLED_WEIGHTS))


def repo_folder(cache: Path, repo_id: str) -> Path:
    """The cache folder of a model repository: models--ORG--NAME (huggingface_hub's repo_folder_name)."""
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def add_to_cache(
    cache: Path,
    repo_id: str,
    model_dir: Path,
    *,
    refs: tuple[str, ...] = ("main",),
    sha: str | None = None,
    skip: tuple[str, ...] = (),
) -> str:
    """Lay `model_dir`'s files (less those named in `skip`) out in hub cache `cache` as commit `sha` of `repo_id`,
    the commit `refs` point to; returns the sha (by default a hash of the repository id and the files' contents,
    so laying the same files out again changes nothing).

    The layout is huggingface_hub's own (file_download.py and _snapshot_download.py read it so): `blobs/HASH`
    holds each file once, `snapshots/SHA/FILE` is a relative symlink to its blob, and `refs/REF` holds the
    commit sha (no newline: huggingface_hub reads it unstripped).
    """
    files = sorted(f for f in Path(model_dir).iterdir() if f.is_file() and f.name not in skip)
    digest = hashlib.sha1(repo_id.encode())
    for file in files:
        digest.update(file.name.encode() + file.read_bytes())
    sha = sha or digest.hexdigest()
    folder = repo_folder(cache, repo_id)
    snapshot = folder / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "blobs").mkdir(exist_ok=True)
    for file in files:
        blob = folder / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.relpath(blob, snapshot), link)
    (folder / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(sha)
    return sha


# -- huggingface_hub's errors, as one line naming the problem and the fix ---------------------------------
def _gated(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    return ConfigError(
        f"{model_id}: a gated repository, and no access token with access to it was found",
        hint=f"accept its conditions on huggingface.co/{repo_id}, then log in with `hf auth login` or set HF_TOKEN",
    )


def _no_revision(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    return ConfigError(
        f"{model_id}: {repo_id} has no revision {revision!r} on the Hub",
        hint=f"give a branch, tag or commit of {repo_id}: {repo_id}@REVISION",
    )


def _no_repository(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    return ConfigError(
        f"{model_id}: no model repository {repo_id} on the Hub (or it is private)",
        hint="check the id; for a private repository log in with `hf auth login` or set HF_TOKEN",
    )


def _incomplete(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    return ConfigError(
        f"{model_id}: its snapshot in the hub cache lacks files it needs and the Hub cannot be reached",
        hint=f"complete it with `hf download {repo_id} --revision {revision}` where the Hub is reachable",
    )


def _not_cached(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    repo_folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    if (repo_folder / "refs" / revision).is_file() or (repo_folder / "snapshots" / revision).is_dir():
        return _incomplete(model_id, repo_id, revision)  # the commit is cached, but not every file asked for
    offline = constants.is_offline_mode()
    why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
    download = f"`hf download {repo_id}" + (f" --revision {revision}`" if revision != DEFAULT_REVISION else "`")
    if repo_folder.is_dir():
        cached = sorted(p.name for p in (repo_folder / "refs").glob("*")) or ["no named revision"]
        return ConfigError(
            f"{model_id}: revision {revision!r} of {repo_id} is not in the hub cache "
            f"(cached: {', '.join(cached)}) and {why}",
            hint=f"give a cached revision, or download this one with {download}",
        )
    return ConfigError(
        f"{model_id}: no such local directory, and no hub model {repo_id} in the hub cache "
        f"({constants.HF_HUB_CACHE}) while {why}",
        hint=f"download it with {download}"
        + (", or unset HF_HUB_OFFLINE" if offline else "")
        + "; or give the path of a model directory",
    )


def _hub_failed(model_id: str, repo_id: str, revision: str) -> MergescopeError:
    return MergescopeError(
        f"{model_id}: the Hub answered with an error while resolving {repo_id}",
        hint="retry later; with the model in the hub cache, HF_HUB_OFFLINE=1 needs no Hub",
    )


def _mapped_error(error: Exception, model_id: str, repo_id: str, revision: str) -> MergescopeError | None:
    """The one-line error for a huggingface_hub failure (the first matching type: subclasses come first)."""
    from huggingface_hub import errors

    # never the exception's own text: it may carry URLs and request details, and says nothing about the fix
    mapping: tuple[tuple[type[Exception], Callable[[str, str, str], MergescopeError]], ...] = (
        (errors.GatedRepoError, _gated),
        (errors.RevisionNotFoundError, _no_revision),
        (errors.RepositoryNotFoundError, _no_repository),
        (errors.IncompleteSnapshotError, _incomplete),
        (errors.LocalEntryNotFoundError, _not_cached),
        (errors.HfHubHTTPError, _hub_failed),
    )
    return next((build(model_id, repo_id, revision) for kind, build in mapping if isinstance(error, kind)), None)
