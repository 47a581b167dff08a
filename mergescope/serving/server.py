"""`mergescope serve`: one candidate or parent on an OpenAI-compatible HTTP endpoint, through vLLM's server.

The server is vLLM's own (`python -m vllm.entrypoints.openai.api_server`), run as a child process with the
same engine settings as the sweep's vllm backend. A candidate is named by its id in a run: its merged
weights under RUN/merges/ID are served, merged first through mergekit when the sweep did not keep them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from mergescope.errors import ConfigError
from mergescope.models import hub
from mergescope.models.parents import resolve_model
from mergescope.runs.directory import find_subject, merges_dir, read_run_meta
from mergescope.serving.options import EngineOptions


@dataclass(frozen=True)
class ServeTarget:
    """The model directory to serve and the name clients ask for."""

    model_dir: Path
    served_name: str


def resolve_target(target: str, run: Path | None = None) -> ServeTarget:
    """The directory behind a model directory, a hub id (its snapshot, served under the id), or a subject id of
    `run` (merging it if needed)."""
    path = Path(target)
    if (path / "config.json").is_file():
        return ServeTarget(path.resolve(), path.resolve().name)
    if run is None and hub.is_hub_id(target):
        return ServeTarget(resolve_model(target).path, target)
    if run is None:
        raise ConfigError(
            f"{target} is not a model directory",
            hint="give a model directory or a hub id org/name[@revision], or --run RUN with a candidate id",
        )
    return ServeTarget(_subject_dir(target, Path(run)), target)


def _subject_dir(subject_id: str, run: Path) -> Path:
    from mergescope.merging.merge import merge_to_disk  # mergekit: only when a candidate is served

    subject = find_subject(run, subject_id)
    if subject.candidate is not None:
        return merge_to_disk(subject.candidate, merges_dir(run)).resolve()
    if subject.path is None:
        raise ConfigError(f"{run}: subject {subject_id} has neither a model directory nor a candidate")
    return subject.path.resolve()  # a parent or the base


def server_command(target: ServeTarget, host: str, port: int, options: EngineOptions = EngineOptions()) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for `target`, with the sweep's engine settings."""
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--host",
        host,
        "--port",
        str(port),
        "--served-model-name",
        target.served_name,
    ]
    for key, value in options.engine_kwargs(target.model_dir).items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            command += [flag] if value else []
        else:
            command += [flag, str(value)]
    return command


def serve(
    target: str, run: Path | None = None, host: str = "127.0.0.1", port: int = 8000, dtype: str | None = None
) -> int:
    """Run vLLM's server on the resolved target until it stops; returns the server's exit code. It serves in
    `dtype`, by default in the dtype `run` was served in (float32 for a model directory alone)."""
    options = EngineOptions(dtype=dtype or served_dtype(run))  # an unknown dtype is refused before any merge
    resolved = resolve_target(target, run)
    environment = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", str(options.kv_cache_gib)),
    }
    print(f"serving {resolved.model_dir} as {resolved.served_name!r} on http://{host}:{port}/v1", flush=True)
    return supervise(server_command(resolved, host, port, options), environment)


def served_dtype(run: Path | None) -> str:
    """The dtype a run's models were served in; float32 without a run."""
    meta = read_run_meta(run) if run is not None else None
    return meta.served_dtype() if meta is not None else "float32"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: object) -> None:
    raise _Stopped(signum)


def supervise(command: list[str], environment: dict[str, str], stop_timeout_s: float = 30.0) -> int:
    """Run `command` until it exits, or until this process gets SIGTERM, SIGINT or SIGHUP; return the exit code.

    The child leads a process group of its own and a stop signal reaches the whole group (vLLM's server has
    children of its own, and an orphan keeps the port): terminated, waited for `stop_timeout_s`, then killed.
    A stop returns the conventional 128 + signal number; a child that fails has its last stderr line repeated.
    """
    child = subprocess.Popen(
        command, env=environment, start_new_session=True, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    last_line: list[str] = []
    tee = threading.Thread(target=_tee, args=(child.stderr, last_line), daemon=True)
    tee.start()
    previous = {stop: signal.signal(stop, _raise_stopped) for stop in STOP_SIGNALS}
    try:
        code = child.wait()
    except _Stopped as stopped:
        for stop in STOP_SIGNALS:  # a second signal must not cut the shutdown short; the kill timeout bounds it
            signal.signal(stop, signal.SIG_IGN)
        _stop_group(child, stop_timeout_s)
        return 128 + stopped.signum
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    tee.join(timeout=5)
    if code != 0:
        print(
            f"error: the server exited with code {code}: {last_line[0] if last_line else '(no output)'}",
            file=sys.stderr,
            flush=True,
        )
    return code


def _tee(stream, last_line: list[str]) -> None:
    """Copy the child's stderr to ours, keeping its last non-blank line."""
    for line in stream:
        sys.stderr.write(line)
        if line.strip():
            last_line[:] = [line.strip()]


def _stop_group(child: subprocess.Popen, timeout_s: float) -> None:
    """Terminate the child's process group, kill what is left after `timeout_s`, and reap the child."""
    _signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(child.pid, signal.SIGKILL)  # the leader's own children may outlive it
    child.wait()


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:  # the whole group is gone already
        pass
