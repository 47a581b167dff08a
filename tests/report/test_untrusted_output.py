"""Model output is untrusted text: it is escaped in every HTML and notebook output, and never run as code.

tests/report/test_report.py checks one hostile answer and label in the report, and tests/scoring/test_rubric.py that
judge
prompts delimit answers and print template syntax verbatim. Here: hostile text in every text column the
report can show, hostile answers in the notebook's HTML outputs, a rubric template that tries to reach
Python, and an audit of the package source for the ways text could become code.
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
from pathlib import Path

import pytest

from helpers import report_runs

PACKAGE = Path(__file__).resolve().parents[2] / "mergescope"
PAYLOADS = ("<script>alert('pwned')</script>", "<img src=x onerror=alert(1)>", "{{ 7*7 }}", "{% raw %}")
HOSTILE = " ".join(PAYLOADS)


def hostile_everywhere(run_dir: Path, target: Path) -> Path:
    """A copy of the run whose emergent items answer with HOSTILE, and whose every label, prompt, target,
    answer and parent name carries it too (labels stay distinct)."""
    report_runs.hostile(run_dir, target)
    with sqlite3.connect(target / report_runs.STORE) as db:
        db.execute("UPDATE subjects SET label = ? || ' #' || position", (HOSTILE,))
        db.execute("UPDATE items SET prompt = ?, target = ?, response = ? || response", (HOSTILE, HOSTILE, HOSTILE))
        names = [f"{HOSTILE} #{n}" for n in range(2)]
        db.execute("UPDATE meta SET value = ? WHERE key = 'parent_names'", (json.dumps(names),))
    return target


def test_report_shows_hostile_text_in_every_column_as_text(default_run, tmp_path):
    from mergescope.report import write_report

    run = hostile_everywhere(default_run[1].run_dir, tmp_path / "run")
    page = write_report(run, tmp_path / "report").read_text(encoding="utf-8")
    for payload in PAYLOADS[:2]:
        assert payload not in page and payload in html.unescape(page)  # shown, as escaped text only
    assert len(re.findall(r"<script", page)) == 1  # the report's own sort script, nothing injected
    assert html.unescape(page).count("{{ 7*7 }} {% raw %}") >= 3  # labels, prompts, answers: printed, not run


@pytest.mark.slow
def test_notebook_outputs_escape_hostile_answers(default_run, tmp_path, monkeypatch):
    from test_notebooks import execute

    run = hostile_everywhere(default_run[1].run_dir, tmp_path / "run")
    notebook = execute("emergence_analysis.ipynb", {"MERGESCOPE_RUN": str(run)}, monkeypatch)
    html_outputs = [
        str(output["data"]["text/html"])
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "text/html" in output.get("data", {})
    ]
    shown = "\n".join(html_outputs)
    assert PAYLOADS[0] in html.unescape(shown)  # shown as text (pandas cuts long cells: the first payload only)
    for payload in PAYLOADS[:2]:
        assert payload not in shown


def test_a_rubric_template_cannot_reach_python():
    """Rubric templates come from YAML files: the sandbox refuses attribute tricks that lead to code."""
    import jinja2.exceptions

    from mergescope.scoring.rubric import _ENVIRONMENT

    with pytest.raises(jinja2.exceptions.SecurityError):
        _ENVIRONMENT.from_string("{{ ''.__class__.__mro__[1].__subclasses__() }}").render()


# Ways text can become code, and the only places they may appear (with the reason).
FORBIDDEN = {
    r"(?<![\w.])eval\(": {},
    r"(?<![\w.])exec\(": {},
    r"shell\s*=\s*True": {},
    r"os\.(system|popen)\(": {},
    r"trust_remote_code\s*=\s*True": {},
    r"torch\.load\(|pickle\.loads?\(|yaml\.load\(|yaml\.unsafe_load": {},
    r"\|\s*safe\b|Markup\(|autoescape\s*=\s*False": {"scoring/rubric.py": "judge prompts are plain text, not HTML"},
    r"from_string\(|jinja2\.Template\(": {
        "scoring/rubric.py": "rubric templates, sandboxed; answers enter as variables"
    },
}


@pytest.mark.parametrize("pattern", list(FORBIDDEN))
def test_package_source_never_turns_text_into_code(pattern):
    hits = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".html", ".js"):
            continue
        relative = path.relative_to(PACKAGE).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line) and relative not in FORBIDDEN[pattern]:
                hits.append(f"{relative}:{number}: {line.strip()}")
    assert hits == []
