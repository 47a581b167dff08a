"""The self-contained HTML report: Jinja2 with autoescaping, plots embedded as SVG data, no network at all.

The page carries a Content-Security-Policy that allows nothing but data: images and the report's own
inline style and script (by hash): even if model text ever escaped autoescaping, no injected script would
run and nothing would be fetched.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from mergescope.analysis.run_analysis import RunAnalysis, analyse_run
from mergescope.analysis.run_data import load_run
from mergescope.errors import MergescopeError
from mergescope.faults import kill_point
from mergescope.report import sections
from mergescope.report.plots import PLOTS

STATIC_FILES = {"style": "report.css", "script": "sortable.js"}
SVG_METADATA = ("Creator", "Date", "Format", "Type")


@dataclass(frozen=True)
class EmbeddedPlot:
    name: str
    title: str
    data_uri: str


def embed(figure) -> str:
    """A figure as a base64 SVG data URI, so the report needs no other file and no network."""
    buffer = io.BytesIO()
    # Text stays text (smaller files, searchable); a fixed hash salt and no metadata (date, creator links)
    # make the SVG reproducible.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "mergescope"}):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata=dict.fromkeys(SVG_METADATA))
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_plots(data: Any, registry: Mapping[str, Callable[[Any], Any]] = PLOTS) -> list[EmbeddedPlot]:
    """Every plot of `registry` that has something to show for `data` (a RunAnalysis for PLOTS)."""
    plots = []
    for name, function in registry.items():
        figure = function(data)
        if figure is not None:
            title = (function.__doc__ or name).strip().splitlines()[0]
            plots.append(EmbeddedPlot(name, title, embed(figure)))
    return plots


def _environment() -> Environment:
    # Autoescaping is on for every template: model outputs are untrusted text and must stay text.
    environment = Environment(
        loader=PackageLoader("mergescope.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    environment.filters["number"] = sections.number
    return environment


def _csp_hash(environment: Environment, template: str) -> str:
    """The CSP source of an inline block: the sha256 of the text the template includes."""
    text = environment.get_template(template).render()
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def render_page(template: str, **context: Any) -> str:
    """A template of the report package rendered as one self-contained page: inline style and script, CSP."""
    environment = _environment()
    return environment.get_template(template).render(
        **context,
        static=STATIC_FILES,
        csp={kind: _csp_hash(environment, name) for kind, name in STATIC_FILES.items()},
    )


def render_report(analysis: RunAnalysis) -> str:
    """The report of an analysed run as one HTML document."""
    run = analysis.run
    return render_page(
        "report.html",
        run=run,
        tasks=run.tasks(),
        plots=render_plots(analysis),
        summary=sections.summary(analysis),
        candidates=sections.candidate_table(analysis),
        examples=sections.example_transitions(analysis),
        judges=sections.judge_section(analysis),
        kinship=sections.kinship_table(analysis),
        slerp=sections.slerp_table(analysis),
        lineage=sections.lineage(run),
        provenance=sections.provenance(analysis),
        search=sections.search_section(analysis),
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `reports/NAME/index.html` (or `out/index.html`) for the run in `run_dir`; returns its path."""
    analysis = analyse_run(load_run(run_dir))
    out_dir = Path(out) if out else Path("reports") / analysis.name
    return write_analysed_report(analysis, out_dir)


def write_analysed_report(analysis: RunAnalysis, out_dir: Path) -> Path:
    """Write the report of an analysed run to `out_dir/index.html`; returns its path."""
    return write_page(out_dir / "index.html", render_report(analysis))


def write_page(target: Path, html: str) -> Path:
    """Write a rendered page to `target` (creating its folder) atomically; returns `target`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, html)
    except OSError as error:
        raise MergescopeError(
            f"cannot write the report {target}: {error.strerror or error}",
            hint="free disk space or choose a writable --out",
        ) from None
    return target


def _write_atomically(target: Path, text: str) -> None:
    """Write `target` through a temporary sibling, so that no reader (and no kill) ever meets half a report."""
    partial = target.with_suffix(".html.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        kill_point("report.partial_written")
        partial.replace(target)
    finally:
        if partial.exists():
            partial.unlink()
