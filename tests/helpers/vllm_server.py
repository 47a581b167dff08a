"""Starting `mergescope serve` (vLLM's OpenAI server as its child) for the tests that need a real server."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(base_url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    """Return once `base_url`/models answers; fail if `server` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "mergescope serve exited before it served"
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{base_url} did not come up in {timeout} s")


@contextmanager
def serving(*serve_args: str) -> Iterator[str]:
    """`mergescope serve SERVE_ARGS` on a free port until the block ends (then SIGTERM); yields the /v1 URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mergescope", "serve", *serve_args, "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        wait_for_server(url, process)
        yield url
    finally:
        if process.poll() is None:  # serve stops vLLM's server, which lives in a process group of its own
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=90)
