"""The HTML report: structure, self-containment, escaping of hostile text, the summary's split, provenance."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import sqlite3
from html.parser import HTMLParser

import pandas as pd
import pytest
from markupsafe import escape
from typer.testing import CliRunner

from helpers import report_runs
from mergescope.cli.app import app
from mergescope.report import write_report

# Names, never fetched: the SVG and XLink namespaces and the SVG 1.1 DTD's identifier.
IDENTIFIERS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd",
}


class Page(HTMLParser):
    """The parts of a page the tests look at: tags with their attributes, and table rows by table id."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: dict[str, int] = {}
        self._table: list[str] = []
        self._in_body = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "table":
            self._table.append(attributes.get("id", ""))
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.rows[self._table[-1]] = self.rows.get(self._table[-1], 0) + 1

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tbody":
            self._in_body = False

    def attributes(self, tag: str) -> list[dict]:
        return [attrs for name, attrs in self.tags if name == tag]


@pytest.fixture(scope="module")
def run_dir(default_run):
    return default_run[1].run_dir


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    path = write_report(run_dir, tmp_path_factory.mktemp("report"))
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def hostile_report(run_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    hostile_dir, _ = report_runs.hostile(run_dir, root / "run")
    return write_report(hostile_dir, root / "report").read_text(encoding="utf-8")


def subjects(run_dir) -> pd.DataFrame:
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return pd.read_sql_query("SELECT * FROM subjects ORDER BY position", db)


def test_the_candidate_table_has_one_row_per_model_and_sorts(report, run_dir):
    page = Page(report)
    assert page.rows["candidate-table"] == len(subjects(run_dir))
    table = next(a for a in page.attributes("table") if a.get("id") == "candidate-table")
    assert table["class"] == "sortable"
    cells = page.attributes("td")
    assert any(re.fullmatch(r"0\.\d+|1(\.0+)?", c.get("data-sort", "")) for c in cells)  # numbers sort as numbers
    assert "function sortTable" in report


def test_the_report_fetches_nothing(report):
    page = Page(report)
    for tag, attributes in page.tags:
        for name in ("src", "href"):
            if name in attributes:
                assert attributes[name].startswith(("data:", "#")), (tag, attributes[name][:80])
    images = [a["src"] for a in page.attributes("img")]
    assert images and all(src.startswith("data:image/svg+xml;base64,") for src in images)
    for src in images:
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert set(re.findall(r"https?://[^\s\"'<>)]+", svg)) <= IDENTIFIERS
        assert not re.search(r"href=\"(?!#|data:image/png;base64,)", svg)  # own shapes and embedded rasters only
    assert set(re.findall(r"https?://[^\s\"'<>)]+", report)) <= IDENTIFIERS


def test_the_content_security_policy_allows_only_the_reports_own_script_and_style(report):
    policy = next(
        a["content"] for a in Page(report).attributes("meta") if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in policy and "img-src data:" in policy
    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", report, re.DOTALL).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


def test_hostile_answers_and_labels_stay_text(hostile_report):
    assert str(escape(report_runs.HOSTILE_ANSWER)) in hostile_report
    assert str(escape(report_runs.HOSTILE_LABEL)) in hostile_report
    assert "<script>document.title" not in hostile_report
    assert "<img src=x" not in hostile_report
    assert "{{ 7*7 }}" in hostile_report  # template syntax in data is printed, never evaluated
    assert len(re.findall(r"<script>", hostile_report)) == 1  # the report's own sort script only


def test_the_summary_names_the_split_and_chooses_on_the_selection_half(report, run_dir):
    assert "selection" in report and "reporting" in report
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        items = pd.read_sql_query(
            "SELECT i.subject_id, i.task, i.metric, i.doc_hash, i.value, s.label, s.position FROM items i"
            " JOIN subjects s ON s.id = i.subject_id WHERE s.kind = 'candidate'",
            db,
        )
    assert (items.groupby("task").metric.nunique() == 1).all()  # the zoo's tasks have one metric each
    # Half A by the analysis' documented rule: the first byte of sha256("0:" + doc_hash) below 128.
    items = items[items.doc_hash.map(lambda h: hashlib.sha256(f"0:{h}".encode()).digest()[0] < 128)]
    best_table = re.search(r'<table id="best">(.*?)</table>', report, re.DOTALL).group(1)
    for (task, metric), part in items.groupby(["task", "metric"]):
        means = part.groupby(["position", "label"]).value.mean().reset_index()
        winner = means.sort_values(["value", "position"], ascending=[False, True]).iloc[0].label
        assert re.search(
            rf"<td>{re.escape(task)}</td><td>{re.escape(metric)}</td><td>{re.escape(winner)}</td>", best_table
        )


def test_provenance_lists_versions_spec_configs_seeds_and_timings(report, run_dir):
    for package in ("mergescope", "mergekit", "lm_eval", "torch"):
        assert f"<td>{package}</td><td>{importlib.metadata.version(package)}</td>" in report
    assert re.search(r"<td>vllm(-cpu)?</td><td>[0-9]", report)
    assert "merge_method: slerp" in report and "Sweep spec" in report
    page = Page(report)
    assert page.rows["timings"] == len(subjects(run_dir)) + 1  # every subject and the total
    assert "Merge seeds" in report


def test_lineage_names_each_candidates_parents_and_base(report, run_dir):
    page = Page(report)
    candidates = subjects(run_dir).query("kind == 'candidate'")
    assert page.rows["lineage-table"] == len(candidates)
    lineage = re.search(r'<table id="lineage-table">(.*?)</table>', report, re.DOTALL).group(1)
    parents = subjects(run_dir).query("kind == 'parent'").label
    for row in re.findall(r"<tr>(.*?)</tr>", lineage, re.DOTALL)[1:]:
        assert all(parent in row for parent in parents), row


def test_sections_without_data_say_so(run_dir, tmp_path):
    bare = report_runs.copy_run(run_dir, tmp_path / "bare")
    report_runs.execute(bare, "DROP TABLE IF EXISTS kinship", "DROP TABLE IF EXISTS slerp_diagnostics")
    html = write_report(bare, tmp_path / "out").read_text()
    assert "No kinship figures in this run." in html
    assert "No SLERP diagnostics in this run." in html
    assert "No judge results in this run" in html
    assert 'id="plot-kinship_layers"' not in html and 'id="plot-interpolation"' in html


def test_the_cli_writes_the_report_and_prints_its_path(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / "cli" / "index.html")
    assert (tmp_path / "cli" / "index.html").stat().st_size > 10_000


def test_a_directory_without_a_store_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2  # bad input
    assert "not a mergescope run" in result.output and "Traceback" not in result.output


def test_judge_results_show_scores_pairwise_outcomes_and_agreement(judged_run, tmp_path):
    html = write_report(judged_run, tmp_path / "judged").read_text()
    page = Page(html)
    with sqlite3.connect(judged_run / "results.sqlite") as db:
        judgments = pd.read_sql_query("SELECT * FROM judgments", db)
        comparisons = pd.read_sql_query("SELECT * FROM comparisons", db)
    assert page.rows["judge-scores"] == judgments.subject_id.nunique()
    scores = re.search(r'<table id="judge-scores" class="sortable">(.*?)</table>', html, re.DOTALL).group(1)
    means = judgments.groupby(["subject_id", "criterion"]).score.mean()
    labels = subjects(judged_run).set_index("id").label
    body = scores.split("<tbody>", 1)[1]
    rows = {
        re.search(r"<td[^>]*>(.*?)</td>", row).group(1): row for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL)
    }
    for (subject_id, _criterion), mean in means.items():
        assert f"{mean:.2f} (" in rows[labels[subject_id]]
    assert page.rows["judge-pairwise"] == comparisons.groupby(["subject_id", "opponent_id"]).ngroups
    assert "Parse failures" in html and "Position bias" in html
    assert 'id="plot-judge_profile"' in html
