"""Plots and the self-contained HTML report of a run; the plots of a kinship study (its report: report.study)."""

from mergescope.report import model_plots, search_plots, study_plots  # noqa: F401  (register the weight, judge, search and study plots)
from mergescope.report.html import render_report, write_report
from mergescope.report.plots import (
    PLOTS,
    SERIES_PLOTS,
    STUDY_PLOTS,
    register_plot,
    register_series_plot,
    register_study_plot,
)

__all__ = [
    "PLOTS",
    "SERIES_PLOTS",
    "STUDY_PLOTS",
    "register_plot",
    "register_series_plot",
    "register_study_plot",
    "render_report",
    "write_report",
]
