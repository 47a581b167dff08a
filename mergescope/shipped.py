"""Files the package ships (sweep specs, search spaces, judge rubrics), found through `importlib.resources`,
and the rule that turns a user's `--sweep`/`--space`/`--rubric` value into a file.

The rule: a value naming an existing file is the user's file; otherwise it names a shipped file, as `NAME`,
`NAME.yaml` or the repository's old form `sweeps/NAME.yaml` (`judges/NAME.yaml`); else a ConfigError lists
the shipped names.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from mergescope.errors import ConfigError, did_you_mean


def shipped_folder(package: str, name: str) -> Path:
    """The folder `name` of package data inside `package`, wherever the package is installed."""
    folder = files(package) / name
    # Wheels install unpacked (setuptools), so the Traversable is a folder on disk; the loaders want a Path.
    return Path(str(folder))


def shipped_names(folder: Path) -> list[str]:
    """The names (file stems) of the YAML files shipped in `folder`."""
    return sorted(path.stem for path in folder.glob("*.yaml"))


def resolve_shipped(value: str | Path, folder: Path, what: str) -> Path:
    """The file `value` means: the user's file where one exists, else the shipped file it names."""
    path = Path(value)
    if path.is_file():
        return path
    name = _shipped_name(path, folder.name)
    if name and (folder / f"{name}.yaml").is_file():
        return folder / f"{name}.yaml"
    known = shipped_names(folder)
    close = did_you_mean(name or path.stem, known)
    hint = close if close.startswith("did you mean") else f"give the path of a YAML file, or a shipped {what} name"
    raise ConfigError(
        f"{what} {str(value)!r}: no such file, nor a shipped {what} (shipped: {', '.join(known)})", hint=hint
    )


def _shipped_name(path: Path, folder_name: str) -> str | None:
    """The shipped name in `NAME`, `NAME.yaml` or `<folder_name>/NAME.yaml`; None for any other path."""
    if path.suffix not in ("", ".yaml"):
        return None
    if len(path.parts) == 1 or (len(path.parts) == 2 and path.parts[0] == folder_name and path.suffix == ".yaml"):
        return path.stem
    return None
