"""Plots and the self-contained HTML report of a run."""

from mergescope.report.html import write_report
from mergescope.report.plots import PLOTS, register_plot

__all__ = ["PLOTS", "register_plot", "write_report"]
