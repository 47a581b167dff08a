"""The console entry point's quick exit (`cli.main` freezes the heap) never prints nanobind "leak" reports."""

from __future__ import annotations

import subprocess
import sys

# transformers' activations module loads torch's compiler stack, and with it triton's nanobind bindings,
# as `mergescope demo` and `mergescope zoo build` do
ENTRY_AFTER_TRITON = """
import sys
import transformers.activations
assert "triton" in sys.modules
sys.argv = ["mergescope", "zoo", "--help"]
from mergescope.cli.app import main
main()
"""


def test_a_command_that_loaded_triton_exits_without_a_leak_report():
    finished = subprocess.run([sys.executable, "-c", ENTRY_AFTER_TRITON], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "Usage: mergescope zoo" in finished.stdout
    assert "leaked" not in finished.stderr
