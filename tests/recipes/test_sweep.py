"""The spine end to end: a real default sweep of the zoo, resumed, reported and listed."""

from __future__ import annotations

import json
import re
import sqlite3

from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.recipes.sweep import sweep
from mergescope.report import write_report

runner = CliRunner()


def test_default_sweep_scores_every_candidate_and_parent(default_run):
    _, result = default_run
    db = sqlite3.connect(result.run_dir / "results.sqlite")
    kinds = dict(db.execute("SELECT kind, count(*) FROM subjects WHERE status = 'done' GROUP BY kind"))
    assert kinds == {"candidate": 6, "parent": 2, "base": 1}
    tasks = {row[0] for row in db.execute("SELECT DISTINCT task FROM scores")}
    assert tasks == {"zoo_arith", "zoo_facts", "zoo_domain", "zoo_composite"}
    # per-item outcomes are kept, one per item and subject, and they add up to the aggregate score
    rows = db.execute("SELECT subject_id, task, metric, value, n_items FROM scores").fetchall()
    assert len(rows) == 9 * 4
    for subject_id, task, metric, value, n_items in rows:
        outcomes = [
            v
            for (v,) in db.execute(
                "SELECT value FROM items WHERE subject_id = ? AND task = ? AND metric = ?", (subject_id, task, metric)
            )
        ]
        assert len(outcomes) == n_items
        assert abs(sum(outcomes) / n_items - value) < 1e-9


def test_slerp_endpoints_reproduce_their_parents(default_run):
    """SLERP at t=0 is the first parent and t=1 the second, so their per-item answers must be identical."""
    _, result = default_run
    db = sqlite3.connect(result.run_dir / "results.sqlite")
    ids = dict(db.execute("SELECT label, id FROM subjects"))

    def responses(subject_id):
        return db.execute(
            "SELECT task, doc_id, response FROM items WHERE subject_id = ? ORDER BY 1, 2", (subject_id,)
        ).fetchall()

    assert responses(ids["slerp t=0"]) == responses(ids["arith"])
    assert responses(ids["slerp t=1"]) == responses(ids["facts"])


def test_rerun_does_no_new_merge_or_evaluation(default_run):
    settings, first = default_run
    merges_before = sorted(p.name for p in (first.run_dir / "merges").iterdir())
    again = sweep(settings)
    assert (again.n_evaluated, again.n_skipped) == (0, first.n_subjects)
    assert sorted(p.name for p in (first.run_dir / "merges").iterdir()) == merges_before


def test_report_has_every_row_and_an_embedded_plot(default_run, tmp_path):
    _, result = default_run
    html = write_report(result.run_dir, tmp_path / "report").read_text()
    rows = re.findall(r'<tr class="(candidate|parent|base)"', html)
    assert len(rows) >= 8  # 5 SLERP points, 1 linear, 2 parents (and the base)
    assert "data:image/svg+xml;base64," in html
    assert "http://" not in html.split("<body>")[1].replace("http://www.w3.org", "")


def test_results_json_lists_candidate_scores(default_run):
    _, result = default_run
    outcome = runner.invoke(app, ["results", str(result.run_dir), "--json"])
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads(outcome.output)
    assert {"candidate_id", "method", "parameters", "task", "metric", "value", "stderr"} <= set(rows[0])
    slerp_points = sorted({row["parameters"]["t"] for row in rows if row["method"] == "slerp"})
    assert slerp_points == [0, 0.25, 0.5, 0.75, 1]
