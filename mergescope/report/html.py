"""The self-contained HTML report: Jinja2 with autoescaping, plots embedded as SVG data."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
from jinja2 import Environment, PackageLoader, select_autoescape

from mergescope.analysis.run import RunData, load_run
from mergescope.report.plots import PLOTS


@dataclass(frozen=True)
class EmbeddedPlot:
    name: str
    title: str
    data_uri: str


def embed(figure) -> str:
    """A figure as a base64 SVG data URI, so the report needs no other file and no network."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_plots(run: RunData) -> list[EmbeddedPlot]:
    """Every registered plot that has something to show for this run."""
    plots = []
    for name, function in PLOTS.items():
        figure = function(run)
        if figure is not None:
            title = (function.__doc__ or name).strip().splitlines()[0]
            plots.append(EmbeddedPlot(name, title, embed(figure)))
    return plots


def _environment() -> Environment:
    # Autoescaping is on for every template: model outputs are untrusted text and must stay text.
    return Environment(loader=PackageLoader("mergescope.report", "templates"), autoescape=select_autoescape(default=True))


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `reports/NAME/index.html` (or `out/index.html`) for the run in `run_dir`; returns its path."""
    run = load_run(run_dir)
    out_dir = Path(out) if out else Path("reports") / run.name
    out_dir.mkdir(parents=True, exist_ok=True)
    wide = run.wide_scores()
    html = _environment().get_template("report.html").render(
        run=run, tasks=run.tasks(), rows=wide.reset_index().to_dict("records"), plots=render_plots(run),
    )
    target = out_dir / "index.html"
    partial = target.with_suffix(".html.partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(target)
    return target
