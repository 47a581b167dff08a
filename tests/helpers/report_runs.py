"""Variants of a finished run for the plot and report tests: copies of its store with rows deleted, duplicated
or replaced, so that every plot and section meets one candidate, missing scores, many candidates and
hostile model text. Only the copy is changed; the session's default run stays as the sweep wrote it."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from mergescope.scoring.rubric import JUDGES_DIR

STORE = "results.sqlite"
RUBRIC = JUDGES_DIR / "zoo_skills.yaml"
HOSTILE_ANSWER = "<script>document.title = 'pwned'</script>{{ 7*7 }}"
# A '$' pair would be parsed as math by matplotlib, and a malformed formula makes a figure fail to draw.
HOSTILE_LABEL = "<img src=x onerror=\"document.title='pwned'\">{{ 7*7 }} $\\frac{$"
CANDIDATE_TABLES = ("scores", "items", "slerp_diagnostics")


def copy_run(run_dir: Path, target: Path) -> Path:
    """A new run directory holding a copy of `run_dir`'s results store."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(run_dir) / STORE, target / STORE)
    return target


def execute(run_dir: Path, *statements: str, parameters: tuple = ()) -> None:
    with sqlite3.connect(Path(run_dir) / STORE) as db:
        for statement in statements:
            db.execute(statement, parameters if "?" in statement else ())


def _column(run_dir: Path, table: str, name: str) -> str:
    """`name` if `table` exists with that column, else '' (a stage that did not run has no table)."""
    with sqlite3.connect(Path(run_dir) / STORE) as db:
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
    return name if name in columns else ""


def delete_subjects(run_dir: Path, where: str) -> None:
    """Delete the subjects matching `where` (SQL on subjects) and every row of theirs."""
    chosen = f"SELECT id FROM subjects WHERE {where}"
    for table in CANDIDATE_TABLES:
        column = _column(run_dir, table, "candidate_id" if table == "slerp_diagnostics" else "subject_id")
        if column:
            execute(run_dir, f"DELETE FROM {table} WHERE {column} IN ({chosen})")
    execute(run_dir, f"DELETE FROM subjects WHERE {where}")


def single_candidate(run_dir: Path, target: Path) -> Path:
    """A copy keeping only the sweep's first candidate."""
    copy_run(run_dir, target)
    first = "(SELECT id FROM subjects WHERE kind = 'candidate' ORDER BY position LIMIT 1)"
    delete_subjects(target, f"kind = 'candidate' AND id != {first}")
    return target


def missing_scores(run_dir: Path, target: Path) -> Path:
    """A copy where a parent lacks one task, half the candidates are unscored (planned, not done), the last
    task has aggregate scores only, and no score has a stderr or an item count."""
    copy_run(run_dir, target)
    execute(
        target,
        "DELETE FROM scores WHERE subject_id IN (SELECT id FROM subjects WHERE kind = 'parent' ORDER BY position"
        " LIMIT 1) AND task = (SELECT min(task) FROM scores)",
        "DELETE FROM items WHERE subject_id IN (SELECT id FROM subjects WHERE kind = 'parent' ORDER BY position"
        " LIMIT 1) AND task = (SELECT min(task) FROM items)",
        "UPDATE subjects SET status = 'planned', merge_seconds = NULL, eval_seconds = NULL"
        " WHERE kind = 'candidate' AND position % 2 = 0",
        "DELETE FROM scores WHERE subject_id IN (SELECT id FROM subjects WHERE status = 'planned')",
        "DELETE FROM items WHERE subject_id IN (SELECT id FROM subjects WHERE status = 'planned')",
        "DELETE FROM items WHERE task = (SELECT max(task) FROM items)",
        "UPDATE scores SET stderr = NULL, n_items = NULL",
    )
    return target


def many_candidates(run_dir: Path, target: Path, copies: int = 8) -> Path:
    """A copy where every candidate appears `copies` more times (new ids, long labels, same results)."""
    copy_run(run_dir, target)
    originals = "SELECT id FROM subjects WHERE kind = 'candidate' AND id NOT LIKE '%-copy%'"
    has_slerp = _column(target, "slerp_diagnostics", "candidate_id")
    for copy in range(1, copies + 1):
        suffix = f"-copy{copy}"
        # A different config text (a YAML comment), so the analysis does not take the copies for seeds of one point.
        execute(
            target,
            "INSERT INTO subjects (id, kind, label, method, parameters, seed, mix, mergekit_config, path,"
            " status, position, merge_seconds, eval_seconds, finished_at) SELECT id || ?1, kind, label ||"
            " ' (a rather long label, copy ' || ?2 || ')', method, parameters, seed, mix, mergekit_config"
            " || '# ' || ?1, path, status, position + 1000 * ?2, merge_seconds, eval_seconds, finished_at"
            f" FROM subjects WHERE id IN ({originals})",
            parameters=(suffix, copy),
        )
        execute(
            target,
            "INSERT INTO scores SELECT subject_id || ?, task, metric, value, stderr, n_items FROM scores"
            f" WHERE subject_id IN ({originals})",
            parameters=(suffix,),
        )
        execute(
            target,
            "INSERT INTO items SELECT subject_id || ?, task, doc_id, metric, doc_hash, value, prompt,"
            f" target, response FROM items WHERE subject_id IN ({originals})",
            parameters=(suffix,),
        )
        if has_slerp:
            execute(
                target,
                "INSERT INTO slerp_diagnostics SELECT candidate_id || ?, tensor, t, cosine, angle_degrees,"
                f" linear, n_params FROM slerp_diagnostics WHERE candidate_id IN ({originals})",
                parameters=(suffix,),
            )
    return target


def hostile(run_dir: Path, target: Path, items: int = 2) -> tuple[Path, str]:
    """A copy whose first candidate solves `items` items that every parent fails, answering them with a
    script and template syntax, and whose label is an HTML tag; returns the copy and the candidate id."""
    copy_run(run_dir, target)
    with sqlite3.connect(target / STORE) as db:
        candidate = db.execute("SELECT id FROM subjects WHERE kind = 'candidate' ORDER BY position LIMIT 1").fetchone()[
            0
        ]
        task, metric = db.execute("SELECT task, metric FROM items ORDER BY task LIMIT 1").fetchone()
        failed_by_parents = [
            row[0]
            for row in db.execute(
                "SELECT doc_id FROM items WHERE task = ? AND metric = ? AND subject_id IN"
                " (SELECT id FROM subjects WHERE kind = 'parent')"
                " GROUP BY doc_id HAVING max(value) = 0 ORDER BY doc_id",
                (task, metric),
            )
        ][:items]
        db.executemany(
            "UPDATE items SET value = 1, response = ? WHERE subject_id = ? AND task = ? AND doc_id = ?",
            [(HOSTILE_ANSWER, candidate, task, doc_id) for doc_id in failed_by_parents],
        )
        db.execute("UPDATE subjects SET label = ? WHERE id = ?", (HOSTILE_LABEL, candidate))
    assert failed_by_parents, "the run has no item that every parent fails"
    return target, candidate


def judged(run_dir: Path, target: Path, judge_url: str) -> Path:
    """A full copy of the run (with its merged models) judged on the zoo rubric by the judge at `judge_url`."""
    from mergescope.scoring.judge_run import JudgeSettings, judge_run

    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("*.lock", "judge_cache.sqlite"))
    settings = JudgeSettings(url=judge_url, model="stand-in-judge", rubrics=(str(RUBRIC),), timeout_s=10.0)
    result = judge_run(target, settings, backend_name="hf")
    assert not result.incomplete, result.failure
    return target
