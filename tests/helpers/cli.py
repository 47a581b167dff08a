"""Running `mergescope` as a user does: the console entry point in a subprocess, and its one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(
    args: list[str], *, wrap: list[str] = (), preexec: Callable | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`python -m mergescope ARGS` (inside `wrap`, e.g. an unshare+mount prefix), its output captured."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MERGESCOPE_KILL_AT", None)
    return subprocess.run(
        [*wrap, sys.executable, "-m", "mergescope", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        preexec_fn=preexec,
        timeout=timeout,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a failed command (asserting there is exactly one and no traceback)."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one error line, got:\n{result.stderr[-3000:]}"
    return errors[0]
