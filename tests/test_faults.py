"""The fault-injection seam: a kill point signals its process only at the hit MERGESCOPE_KILL_AT names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mergescope.faults import ENV_VAR

PROGRAM = (
    "from mergescope.faults import kill_point\nfor _ in range(3):\n    kill_point('a'); print('passed', flush=True)"
)


def run(kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR} | ({ENV_VAR: kill_at} if kill_at else {})
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    "kill_at, returncode, passes, interrupted",
    [
        (None, 0, 3, False),  # unset: inert
        ("b:1", 0, 3, False),  # another kill point's name
        ("a:2", -signal.SIGKILL, 1, False),  # killed at the second pass, before printing it
        ("a:1:INT", -signal.SIGINT, 0, True),  # SIGINT: a KeyboardInterrupt at the first pass (uncaught here)
    ],
)
def test_a_kill_point_fires_only_at_the_named_hit(kill_at, returncode, passes, interrupted):
    result = run(kill_at)
    assert result.returncode == returncode
    assert result.stdout.count("passed") == passes
    assert ("KeyboardInterrupt" in result.stderr) == interrupted
