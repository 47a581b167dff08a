"""`mergescope validate`: every shipped YAML is valid, and every problem of bad files is reported at once."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from mergescope.cli.app import app
from mergescope.merging.spec import SWEEPS_DIR
from mergescope.recipes import validate as validation
from mergescope.scoring.rubric import JUDGES_DIR

SHIPPED_SPECS = {"default.yaml", "slerp_grid.yaml", "methods_compare.yaml", "density_sweep.yaml", "lu2024_slerp.yaml"}


def test_every_shipped_file_is_valid():
    report = validation.validate()
    assert report.problems == ()
    assert SHIPPED_SPECS <= {f.name for f in report.files if f.parent == SWEEPS_DIR}


def test_the_cli_validates_the_shipped_files_and_exits_0():
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(", 0 problems")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_every_problem_of_every_file_is_reported_and_the_cli_exits_2(tmp_path):
    folder = tmp_path / "sweeps"
    two_bad_blocks = write(
        folder,
        "blocks.yaml",
        "name: b\nmethods:\n- method: slrep\n- method: slerp\n  parameters: {t: 3}\n"
        "- method: linear\n  per_parent: {weight: 1}\n",
    )
    two_bad_keys = write(folder, "keys.yaml", "name: k\nmethod: []\ndtype: float64\n")
    broken = write(folder, "broken.yaml", "name: [unclosed\n")
    report = validation.validate([folder])
    assert len(report.files) == 3
    assert [p.split(":")[0] for p in report.problems].count(str(two_bad_blocks)) == 2
    assert any(f"{two_bad_blocks}: methods.0.method: unknown merge method 'slrep'" in p for p in report.problems)
    assert any(f"{two_bad_blocks}: methods.1.parameters.t: 3 is outside [0, 1]" in p for p in report.problems)
    assert sum(p.startswith(f"{two_bad_keys}:") for p in report.problems) == 2  # dtype and the unknown key 'method'
    assert any(p.startswith(f"{broken}: line") for p in report.problems)
    result = CliRunner().invoke(app, ["validate", str(folder)])
    assert result.exit_code == 2
    assert f"{len(report.problems)} problems" in result.output


def test_a_missing_path_is_a_problem():
    report = validation.validate([Path("/no/such/sweeps")])
    assert report.problems == ("/no/such/sweeps: no such file or folder",)


def test_other_kinds_register_their_own_validator(tmp_path, monkeypatch):
    def no_notes_named_bad(path: Path) -> list[str]:
        return [f"{path}: bad note"] if path.stem == "bad" else []

    monkeypatch.setitem(
        validation.KINDS, "note", validation.YamlKind(frozenset({"note"}), tmp_path / "notes", no_notes_named_bad)
    )
    folder = tmp_path / "notes"
    write(folder, "good.yaml", "anything: 1\n")  # no marker: known by its folder
    bad = write(folder, "bad.yaml", "anything: 2\n")
    elsewhere = write(tmp_path / "misc", "bad.yaml", "note: 3\n")  # known by its marker key
    assert validation.validate([folder, elsewhere]).problems == (f"{bad}: bad note", f"{elsewhere}: bad note")


def test_a_rubric_is_told_by_its_content_not_its_folder(tmp_path):
    rubric = (
        (JUDGES_DIR / "zoo_skills.yaml")
        .read_text()
        .replace("questions: questions/", f"questions: {JUDGES_DIR / 'questions'}/")
    )  # the copy lies elsewhere
    good = write(tmp_path / "sweeps", "my_rubric.yaml", rubric)
    bad = write(tmp_path, "broken_rubric.yaml", rubric.replace("scale: {min: 1, max: 5}", "scale: {min: 5, max: 1}", 1))
    assert validation.validate([good]).problems == ()
    problems = validation.validate([bad]).problems
    assert problems and all(p.startswith(f"{bad}: criteria.0.scale.") for p in problems)


def test_a_sweep_spec_among_rubrics_is_checked_as_a_spec(tmp_path):
    spec = write(tmp_path / "judges", "spec.yaml", (SWEEPS_DIR / "default.yaml").read_text())
    assert validation.validate([spec]).problems == ()


def test_from_loader_turns_a_raising_loader_into_a_validator(tmp_path):
    from mergescope.merging.spec import load_sweep

    check = validation.from_loader(load_sweep)
    bad = write(tmp_path, "bad.yaml", "name: x\nmethods: 3\n")
    (problem,) = check(bad)
    assert problem.startswith(f"{bad}: methods:")
    assert check(SWEEPS_DIR / "default.yaml") == []
