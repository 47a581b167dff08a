"""Shipped sweep specs, search spaces and rubrics (shipped.py): package data found through importlib.resources,
and the rule that a user's existing file wins over a shipped name."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.errors import ConfigError
from mergescope.merging.search_space import load_space
from mergescope.merging.spec import DEFAULT_SWEEP, SWEEPS_DIR, find_sweep, load_sweep
from mergescope.scoring.rubric import JUDGES_DIR, find_rubric
from mergescope.shipped import resolve_shipped, shipped_names

PACKAGE = Path(str(files("mergescope")))


def test_the_shipped_folders_lie_inside_the_package():
    for folder in (SWEEPS_DIR, JUDGES_DIR):
        assert folder.is_dir() and folder.is_relative_to(PACKAGE)
    assert (JUDGES_DIR / "questions" / "zoo_skills.jsonl").is_file()
    assert (PACKAGE / "py.typed").is_file()
    assert {"default", "study", "space_lu2024"} <= set(shipped_names(SWEEPS_DIR))
    assert {"zoo_skills", "chat_quality"} <= set(shipped_names(JUDGES_DIR))


def test_every_data_file_in_the_package_is_declared_package_data():
    """A file the code reads at run time but pyproject does not ship works in a checkout and fails in a wheel."""
    import tomllib

    globs = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    # Modules ship as packages; a .py file in a folder that is no package (an lm-eval task's !function) is data.
    data = [
        path.relative_to(PACKAGE)
        for path in PACKAGE.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and (path.suffix != ".py" or not (path.parent / "__init__.py").is_file())
    ]
    assert data, "no data files found: is the package where the test thinks?"
    unshipped = [str(path) for path in data if not any(path.match(glob) for glob in globs["mergescope"])]
    assert unshipped == []


@pytest.mark.parametrize(
    "value", ["slerp_grid", "slerp_grid.yaml", "sweeps/slerp_grid.yaml", Path("sweeps/slerp_grid.yaml")]
)
def test_a_shipped_spec_resolves_by_name_by_file_name_and_by_its_old_repository_path(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no sweeps/ folder here
    assert find_sweep(value) == SWEEPS_DIR / "slerp_grid.yaml"


def test_an_existing_user_file_wins_over_the_shipped_file_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sweeps").mkdir()
    mine = tmp_path / "sweeps" / "default.yaml"
    mine.write_text("name: mine\nmethods:\n- method: linear\n")
    assert load_sweep("sweeps/default.yaml").name == "mine"
    assert load_sweep("default").source == str(DEFAULT_SWEEP)  # a bare name with no such file is the shipped one


def test_an_unknown_name_is_one_config_error_listing_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        find_sweep("defualt")
    line = caught.value.one_line()
    assert "'defualt'" in line and "did you mean 'default'" in line
    assert all(name in line for name in shipped_names(SWEEPS_DIR))


def test_a_missing_path_elsewhere_is_not_taken_for_a_shipped_name(tmp_path):
    """Only NAME, NAME.yaml and sweeps/NAME.yaml name shipped files: a typo in a user's path stays an error."""
    with pytest.raises(ConfigError, match="no such file"):
        resolve_shipped(tmp_path / "sweeps" / "default.yaml", SWEEPS_DIR, "sweep spec")
    with pytest.raises(ConfigError, match="no such file"):
        find_sweep("configs/default.yaml")


def test_spaces_and_rubrics_follow_the_same_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_space("space_lu2024").source == str(SWEEPS_DIR / "space_lu2024.yaml")
    assert find_rubric("judges/zoo_skills.yaml").source == str(JUDGES_DIR / "zoo_skills.yaml")
    assert find_rubric("chat_quality.yaml").name == "chat_quality"
    with pytest.raises(ConfigError) as caught:
        find_rubric("zoo_skill")
    assert "rubric 'zoo_skill'" in caught.value.one_line() and "did you mean 'zoo_skills'" in caught.value.one_line()


def test_the_cli_reports_an_unknown_shipped_name_on_one_line_and_exits_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["candidates", "slerp_gird", "--parents", "a", "b"])
    assert result.exit_code == 2
    assert result.output.startswith("error: sweep spec 'slerp_gird': no such file")
    assert len(result.output.strip().splitlines()) == 1
