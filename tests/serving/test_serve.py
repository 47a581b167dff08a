"""`mergescope serve` owns its server child: a stop signal ends the child's whole process group and frees its
port; a child that fails makes serve fail with its last error line. A small Python server that starts a child
of its own stands in for vLLM's here (the real server gets the same checks in test_vllm_backend.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from mergescope.serving.server import supervise

# Listens on the port, starts a grandchild (as vLLM's server starts its engine core), reports both, waits.
SERVER = textwrap.dedent("""
    import signal, socket, subprocess, sys, time
    if sys.argv[2] == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    listener = socket.socket()
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen()
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(grandchild.pid, flush=True)
    time.sleep(600)
""")
SUPERVISOR = (
    "import os, sys; from mergescope.serving.server import supervise; "
    "sys.exit(supervise(sys.argv[1:], dict(os.environ), 2.0))"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def started_supervisor(port: int, behaviour: str) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start `supervise` on the stand-in server in a process of its own; return it and the server's processes."""
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, sys.executable, "-c", SERVER, str(port), behaviour],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    grandchild = int(supervisor.stdout.readline())
    (server,) = psutil.Process(supervisor.pid).children()
    return supervisor, [server, psutil.Process(grandchild)]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("behaviour", ["obliging", "stubborn"])
def test_a_stop_signal_ends_the_server_and_its_children_and_frees_the_port(stop, behaviour):
    port = free_port()
    supervisor, servers = started_supervisor(port, behaviour)
    try:
        assert not port_is_free(port)
        supervisor.send_signal(stop)
        assert supervisor.wait(timeout=30) == 128 + stop  # a stubborn server is killed after the 2 s timeout
        _, alive = psutil.wait_procs(servers, timeout=10)
        assert alive == [] and port_is_free(port)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)


def test_a_failing_server_fails_serve_with_its_last_error_line(capfd):
    failing = [
        sys.executable,
        "-c",
        "import sys; print('loading', file=sys.stderr); sys.exit('ValueError: max_model_len 128 is too small')",
    ]
    assert supervise(failing, dict(os.environ)) == 1
    err = capfd.readouterr().err
    assert "loading" in err  # the server's own output still reaches the user
    assert err.strip().splitlines()[-1] == (
        "error: the server exited with code 1: ValueError: max_model_len 128 is too small"
    )


def test_a_server_that_ends_cleanly_ends_serve_cleanly(capfd):
    assert supervise([sys.executable, "-c", "print('bye')"], dict(os.environ)) == 0
    assert capfd.readouterr() == ("bye\n", "")
