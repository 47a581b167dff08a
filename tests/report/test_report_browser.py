"""The report in headless Chromium: it renders, logs nothing to the console, and hostile answers stay text."""

from __future__ import annotations

import html
import re

import pytest

from helpers import report_runs
from mergescope.errors import PrerequisiteError
from mergescope.report import browser, write_report

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def chromium():
    try:
        return browser.chromium()
    except PrerequisiteError:
        pytest.skip(
            "headless Chromium is not installed and `make test` could not install it "
            "(needs apt-get and root: apt-get install -y chromium)"
        )


@pytest.fixture(scope="module")
def hostile_report(default_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    run_dir, _ = report_runs.hostile(default_run[1].run_dir, root / "run")
    return write_report(run_dir, root / "report")


def test_console_messages_are_caught(tmp_path):
    """The harness itself: a page that throws and violates its policy is reported (else the test below proves
    nothing)."""
    page = tmp_path / "faulty.html"
    page.write_text(
        "<!doctype html><html><head><meta http-equiv='Content-Security-Policy' content=\"img-src 'none'\">"
        "<title>t</title></head><body><img src='data:,'><script>undefinedFunction()</script></body></html>"
    )
    messages = browser.load_page(page).console
    assert any("undefinedFunction is not defined" in m for m in messages)
    assert any("Content Security Policy" in m for m in messages)


def test_the_report_renders_without_console_messages(hostile_report, tmp_path):
    png = tmp_path / "report.png"
    shot = browser.screenshot(hostile_report, png, colors=None)
    assert shot.console == ()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert browser.load_page(hostile_report).console == ()


def test_a_script_in_an_answer_shows_as_text_and_does_not_run(hostile_report):
    page = browser.load_page(hostile_report)
    title = re.search(r"<title>(.*?)</title>", page.dom, re.DOTALL).group(1)
    assert title.startswith("mergescope report:")  # the injected script would have set it to 'pwned'
    assert "pwned" not in html.unescape(title)
    # In the DOM the answer is a text node: serialized escaped, never as a script element.
    assert html.escape(report_runs.HOSTILE_ANSWER, quote=False) in page.dom
    assert "<script>document.title" not in page.dom
    assert len(re.findall(r"<script\b", page.dom)) == 1


def test_the_candidate_table_is_sortable_in_the_browser(hostile_report):
    """The sort script runs without errors in the page (a click is not needed to prove it attached)."""
    dom = browser.load_page(hostile_report).dom
    headers = re.search(r'<table id="candidate-table" class="sortable">\s*<thead><tr>(.*?)</tr>', dom, re.DOTALL).group(
        1
    )
    assert headers.count('tabindex="0"') == headers.count("<th") > 5
