"""Analysis of finished runs: everything reads the results store through `load_run`."""

from mergescope.analysis.run_data import RunData, load_run

__all__ = ["RunData", "load_run"]
