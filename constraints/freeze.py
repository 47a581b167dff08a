"""Print a constraints file: the installed version of every package mergescope (with the given extras) needs.

`pip freeze` of the working venv, less mergescope itself and less whatever was installed by hand beside it.
Run by `make constraints` (see the Makefile's comment on versions).
"""

from __future__ import annotations

import importlib.metadata as metadata
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# The exact versions verified together on a CPU-only x86-64 machine (Python {python}, torch {torch}):
# the installed version of every package that mergescope[{extras}] needs,
# written by `make constraints` (constraints/freeze.py). `make install` installs with
# `pip install -c constraints/cpu.txt`; pyproject.toml keeps the compatible ranges."""


def needed(root: str, extras: set[str]) -> dict[str, str]:
    """The installed packages `root` with `extras` requires, directly or not: canonical name -> version."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, str] = {}
    todo = [(canonicalize_name(root), frozenset(extras))]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in visited or name not in installed:
            continue
        visited.add((name, wanted))
        found[name] = installed[name].version
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted | {""}):
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    found.pop(canonicalize_name(root), None)
    return found


def main(extras: list[str]) -> None:
    versions = needed("mergescope", set(extras))
    print(
        HEADER.format(
            python=".".join(map(str, sys.version_info[:2])), torch=versions.get("torch", "-"), extras=",".join(extras)
        )
    )
    for name in sorted(versions):
        print(f"{name}=={versions[name]}")


if __name__ == "__main__":
    main(sys.argv[1:])
