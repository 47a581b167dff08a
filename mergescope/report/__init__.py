"""Plots and the self-contained HTML report of a run."""

from mergescope.report import model_plots  # noqa: F401  (registers the weight and judge plots)
from mergescope.report.html import render_report, write_report
from mergescope.report.plots import PLOTS, SERIES_PLOTS, register_plot, register_series_plot

__all__ = ["PLOTS", "SERIES_PLOTS", "register_plot", "register_series_plot", "render_report", "write_report"]
