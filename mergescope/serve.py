"""`mergescope serve`: one candidate or parent on an OpenAI-compatible HTTP endpoint, through vLLM's server.

The server is vLLM's own (`python -m vllm.entrypoints.openai.api_server`), run as a child process with the
same engine settings as the sweep's vllm backend. A candidate is named by its id in a run: its merged
weights under RUN/merges/ID are served, merged first through mergekit when the sweep did not keep them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mergescope.options import EngineOptions
from mergescope.errors import ConfigError
from mergescope.run_dir import find_subject, merges_dir


@dataclass(frozen=True)
class ServeTarget:
    """The model directory to serve and the name clients ask for."""

    model_dir: Path
    served_name: str


def resolve_target(target: str, run: Path | None = None) -> ServeTarget:
    """The directory behind a model directory, or behind a subject id of `run` (merging it if needed)."""
    path = Path(target)
    if (path / "config.json").is_file():
        return ServeTarget(path.resolve(), path.resolve().name)
    if run is None:
        raise ConfigError(f"{target} is not a model directory",
                          hint="give a model directory, or --run RUN with a candidate id")
    return ServeTarget(_subject_dir(target, Path(run)), target)


def _subject_dir(subject_id: str, run: Path) -> Path:
    from mergescope.merge import merge_to_disk  # mergekit: only when a candidate is served

    subject = find_subject(run, subject_id)
    if subject.candidate is None:  # a parent or the base
        return subject.path.resolve()
    return merge_to_disk(subject.candidate, merges_dir(run)).resolve()


def server_command(target: ServeTarget, host: str, port: int, options: EngineOptions = EngineOptions()) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for `target`, with the sweep's engine settings."""
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--host", host, "--port", str(port),
               "--served-model-name", target.served_name]
    for key, value in options.engine_kwargs(target.model_dir).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            command += [flag] if value else []
        else:
            command += [flag, str(value)]
    return command


def serve(target: str, run: Path | None = None, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Run vLLM's server on the resolved target until it stops; returns the server's exit code."""
    resolved = resolve_target(target, run)
    options = EngineOptions()
    environment = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE",
                                                                          str(options.kv_cache_gib))}
    print(f"serving {resolved.model_dir} as {resolved.served_name!r} on http://{host}:{port}/v1", flush=True)
    return subprocess.call(server_command(resolved, host, port, options), env=environment)
