"""Usage errors of every command are one `error:` line with a hint and exit 2, like the project's own errors.

The battery walks the command tree, so a new command or option is covered the day it is added: each option that
parses a number gets a word, each command an unknown option, each required argument goes missing. In process
(typer's CliRunner runs the same top-level group `main` as the console script); one subprocess case checks the
installed entry point.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from mergescope.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)


def _commands(group=ROOT, path=()):
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(_commands())
NUMERIC_OPTIONS = [
    (path, option.opts[0])
    for path, command in COMMANDS
    for option in command.params
    if option.param_type_name == "option" and not option.is_flag and option.type_descriptor.annotation in (int, float)
]


def _placeholders(command) -> list[str]:
    """Values for the command's required arguments and options, so that only the option under test is wrong."""
    words = []
    for param in command.params:
        if param.required and param.param_type_name == "argument":
            words.append("placeholder")
        elif param.required:
            words += [param.opts[0], "1"]
    return words


def assert_one_error_line(result, *needles: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(hint: " in lines[0], result.output
    assert "Traceback" not in result.output and "╭" not in result.output  # no traceback, no boxed panel
    for needle in needles:
        assert needle in lines[0], result.output


def test_the_battery_reaches_every_command_and_numeric_option():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"sweep", "search", "study", "judge", "report", "emergence", "zoo build"} <= names
    assert len(NUMERIC_OPTIONS) >= 20  # limit, budget, seed, alpha, port, timeout, ... of every command


@pytest.mark.parametrize(
    ("path", "option"), NUMERIC_OPTIONS, ids=lambda value: " ".join(value) if isinstance(value, tuple) else value
)
def test_a_word_for_a_number_is_one_line(path, option):
    command = dict(COMMANDS)[path]
    result = runner.invoke(app, [*path, *_placeholders(command), option, "abc"])
    assert_one_error_line(result, option, "mergescope " + " ".join(path) + " --help")


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_an_unknown_option_is_one_line(path):
    result = runner.invoke(app, [*path, "--no-such-option"])
    assert_one_error_line(result, "--no-such-option")


@pytest.mark.parametrize(
    "path",
    [path for path, command in COMMANDS if any(p.required and p.param_type_name == "argument" for p in command.params)],
    ids=" ".join,
)
def test_a_missing_argument_is_one_line(path):
    assert_one_error_line(runner.invoke(app, list(path)), "Missing argument")


def test_an_unknown_command_is_one_line():
    assert_one_error_line(runner.invoke(app, ["sweeep"]), "sweeep")


@pytest.mark.parametrize("command", ["sweep", "search", "study"])
@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--gen-kwargs", "temperature", "'temperature' is not key=value"),
        ("--gen-kwargs", "temperature=hot", "temperature='hot' is not a number"),
        ("--gen-kwargs", "max_gen_toks=0", "out of range"),
        ("--gen-kwargs", "{not json", "not a JSON object"),
        ("--num-fewshot", "abc", "--num-fewshot"),
        ("--num-fewshot", "-1", "--num-fewshot"),
        ("--batch-size", "0", "--batch-size"),
    ],
)
def test_evaluation_flags_are_checked_before_any_work(command, flag, value, needle, tmp_path):
    space = ["--space", "space_lu2024", "--budget", "1"] if command == "search" else []
    result = runner.invoke(app, [command, *space, flag, value, "--out", str(tmp_path / "run")])
    assert_one_error_line(result, needle)
    assert not (tmp_path / "run").exists()


def test_help_is_as_it_was():
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output and "--gen-kwargs" in result.output


def test_the_console_script_prints_one_line_too():
    """The two inputs a user reported: a traceback and a boxed usage panel before."""
    for args, needle in (
        (["sweep", "--gen-kwargs", "temperature"], "--gen-kwargs temperature"),
        (["sweep", "--num-fewshot", "abc"], "'--num-fewshot'"),
    ):
        done = subprocess.run([sys.executable, "-m", "mergescope", *args], capture_output=True, text=True, timeout=120)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert needle in lines[0] and not done.stdout
