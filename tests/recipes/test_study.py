"""The kinship study (`mergescope study`, mergescope/recipes/study.py): bad input refused before any work, a real study
of
three zoo pairs with its report, and resuming a study that was interrupted or whose done mark is gone.

The zoo has no pairs of its own yet, so the pairs are made from its models: arith + facts with the base
(task-vector kinship), arith + stranger and facts + stranger without one (raw-weight kinship).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from test_crash_resume import launch, store_contents

from helpers import fake_runs
from helpers.cli import error_line, run_cli
from mergescope.errors import ConfigError
from mergescope.recipes.study import DONE_MARK, StudySettings, check_study, study, zoo_study_pairs
from mergescope.recipes.sweep import SweepSettings
from mergescope.runs.directory import write_run_meta
from mergescope.runs.records import StudyPair
from mergescope.runs.store import STORE_NAME, ResultsStore
from mergescope.zoo.manifest import ZooPair

LIMIT = 20


def zoo_pairs(zoo) -> tuple[StudyPair, ...]:
    model = zoo.model_path
    return (
        StudyPair("arith_facts", (model("arith"), model("facts")), model("base"), kind="two skills"),
        StudyPair("arith_stranger", (model("arith"), model("stranger")), kind="across lineages"),
        StudyPair("facts_stranger", (model("facts"), model("stranger")), kind="across lineages"),
    )


def pair_option(pair: StudyPair) -> str:
    return f"{pair.key}=" + ",".join(str(p) for p in (*pair.parents, *([pair.base] if pair.base else [])))


def settings_for(zoo, out: Path) -> StudySettings:
    return StudySettings(
        zoo_pairs(zoo), out=out, options=SweepSettings(parents=[], backend="hf", limit=LIMIT, progress=False)
    )


def refused(args: list[str], out: Path, expected: str) -> str:
    """Run `mergescope study ARGS --out OUT`: exit 2, one error line holding `expected`, nothing created."""
    result = run_cli(["study", *args, "--out", str(out), "--limit", str(LIMIT)])
    assert result.returncode == 2, result.stderr[-2000:]
    line = error_line(result)
    assert expected in line, line
    assert not out.exists()
    return line


def altered_copy(source: Path, target: Path, **config) -> Path:
    """A copy of a model directory whose config.json has `config` written over it."""
    shutil.copytree(source, target)
    path = target / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return target


# -- bad input: one line, exit 2, nothing created ----------------------------------------------------------


def test_fewer_than_two_pairs_are_refused(zoo, tmp_path):
    refused(["--pairs", pair_option(zoo_pairs(zoo)[0])], tmp_path / "study", "at least two pairs, got 1")


def test_pairs_of_different_architectures_are_refused(zoo, tmp_path):
    other = [
        altered_copy(zoo.model_path(name), tmp_path / name, architectures=["MistralForCausalLM"], model_type="mistral")
        for name in ("arith", "facts")
    ]
    line = refused(
        ["--pairs", pair_option(zoo_pairs(zoo)[1]), "--pairs", f"mistral_pair={other[0]},{other[1]}"],
        tmp_path / "study",
        "differ in architectures",
    )
    assert "mistral_pair" in line and "arith_stranger" in line


def test_a_repeated_pair_is_refused_in_either_order(zoo, tmp_path):
    model = zoo.model_path
    line = refused(
        [
            "--pairs",
            f"first={model('arith')},{model('facts')},{model('base')}",
            "--pairs",
            f"again={model('facts')},{model('arith')},{model('base')}",
        ],
        tmp_path / "study",
        "are the same pair",
    )
    assert "'first'" in line and "'again'" in line


def test_malformed_pairs_missing_models_and_zoos_without_pairs_are_refused(zoo, tmp_path):
    refused(["--pairs", "lonely=only/one/model"], tmp_path / "study", "expected [GROUP/]NAME=A,B[,BASE]")
    refused(
        ["--pairs", "bad name=a,b", "--pairs", pair_option(zoo_pairs(zoo)[1])],
        tmp_path / "study",
        "is not a folder name",
    )
    refused(
        ["--pairs", f"ghost={tmp_path / 'none'},{tmp_path / 'nowhere'}", "--pairs", pair_option(zoo_pairs(zoo)[1])],
        tmp_path / "study",
        f"pair 'ghost': {tmp_path / 'none'}: not a directory",
    )
    bare = tmp_path / "bare-zoo"
    bare.mkdir()
    manifest = json.loads((zoo.root / "zoo.json").read_text())
    (bare / "zoo.json").write_text(json.dumps({**manifest, "pairs": []}))
    refused(["--zoo", str(bare)], tmp_path / "study", "lists no pairs")


def test_shapes_must_agree_within_a_group_only(zoo, tmp_path):
    """Two zoo sizes side by side: a pair of wider models is refused in the same group, accepted in its own."""
    wide = [altered_copy(zoo.model_path(name), tmp_path / name, hidden_size=256) for name in ("arith", "facts")]
    small = zoo_pairs(zoo)[1]
    options = SweepSettings(parents=[], tasks=["zoo_arith"], task_paths=[zoo.task_yaml_dir()])  # the copies have no zoo
    with pytest.raises(ConfigError, match="differ in hidden_size: 64 vs 256"):
        check_study(
            StudySettings((small, StudyPair("wide", (wide[0], wide[1]))), out=tmp_path / "study", options=options)
        )
    plans = check_study(
        StudySettings(
            (small, StudyPair("wide", (wide[0], wide[1]), group="large")), out=tmp_path / "study", options=options
        )
    )
    assert [p.plan.run_dir for p in plans] == [
        tmp_path / "study" / "pairs" / "arith_stranger",
        tmp_path / "study" / "pairs" / "large" / "wide",
    ]
    assert not (tmp_path / "study").exists()


def test_zoo_pairs_become_study_pairs_in_the_zoo_group(zoo):
    pairs = [
        ZooPair(
            name="two_skills",
            parents=("arith", "facts"),
            base="base",
            kind="two skills",
            tasks=["zoo_arith", "zoo_facts"],
        ),
        ZooPair(name="lineages", parents=("facts", "stranger"), base=None, kind="across lineages", tasks=["zoo_facts"]),
    ]
    manifest = zoo.model_copy(update={"pairs": pairs}).with_root(zoo.root)
    default, small = zoo_study_pairs(manifest), zoo_study_pairs(manifest, group="small")
    assert [p.group for p in default] == [zoo.root.name] * 2 and [p.key for p in small] == [
        "small/two_skills",
        "small/lineages",
    ]
    assert default[0].parents == (zoo.model_path("arith"), zoo.model_path("facts"))
    assert default[0].base == zoo.model_path("base") and default[1].base is None
    assert default[1].tasks == ("zoo_facts",) and default[1].task_paths == (zoo.task_yaml_dir(),)
    assert default[1].kind == "across lineages"


@pytest.mark.slow
def test_a_pair_folder_holding_other_parents_is_refused_and_kept(zoo, tmp_path):
    out = tmp_path / "study"
    store_path = out / "pairs" / "arith_stranger" / STORE_NAME
    store_path.parent.mkdir(parents=True)
    store = ResultsStore(store_path)
    write_run_meta(store, fake_runs.run_meta(["/somewhere/else/a", "/somewhere/else/b"]))
    store.close()
    before = store_path.read_bytes()
    result = run_cli(["study", *(a for p in zoo_pairs(zoo) for a in ("--pairs", pair_option(p))), "--out", str(out)])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "holds a sweep of other parents" in error_line(result)
    assert store_path.read_bytes() == before and sorted(p.name for p in (out / "pairs").iterdir()) == ["arith_stranger"]


# -- a real study ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_study(zoo, tmp_path_factory):
    """The three pairs swept with the default spec on 20 items per task, uninterrupted."""
    settings = settings_for(zoo, tmp_path_factory.mktemp("study") / "reference")
    return settings, study(settings)


def half(doc_hash: str) -> str:
    """The item half, computed here from the documented rule: a seeded SHA-256 of the item's hash."""
    return "A" if hashlib.sha256(f"0:{doc_hash}".encode()).digest()[0] < 128 else "B"


@pytest.mark.slow
def test_study_report_shows_every_pair_and_the_driver_model(reference_study):
    settings, result = reference_study
    html = result.report.read_text()
    assert result.report == settings.out / "report" / "index.html"
    assert 'id="plot-emergence_vs_kinship"' in html and 'id="plot-kinship_vs_parents"' in html
    assert 'id="driver-table-1"' in html and 'id="driver-table-2"' in html and "partial r" in html
    links = re.findall(r'<a class="pair-report" href="([^"]+)"', html)
    assert len(links) == 3
    for link, pair in zip(links, settings.pairs, strict=True):
        assert link == f"pairs/{pair.key}/index.html"
        assert f"mergescope report: {pair.name}" in (result.report.parent / link).read_text()
    assert html.count("<script>") == 1


@pytest.mark.slow
def test_emergence_vs_kinship_has_one_point_per_pair_and_measure(reference_study):
    from mergescope.report import STUDY_PLOTS

    _, result = reference_study
    figure = STUDY_PLOTS["emergence_vs_kinship"](result.data)
    panels = figure.axes
    assert len(panels) == 2 * 4  # cosine and Pearson, for each of the zoo's four tasks
    assert all(len(axis.containers) == 3 for axis in panels)  # one error bar per pair
    assert len(result.data.best) == 3 * 4


@pytest.mark.slow
def test_the_best_candidate_is_chosen_on_one_half_and_reported_on_the_other(reference_study):
    """Recomputed from the stored items with pandas: the chosen candidate scores highest on half A, and the
    figures shown are its half-B scores against the parents' half-B scores."""
    _, result = reference_study
    for figures in result.data.pairs:
        run = figures.run
        best = result.data.best[result.data.best.pair == figures.pair.key]
        for row in best.itertuples():
            items = run.items[(run.items.task == row.task) & (run.items.metric == row.measure)]
            scores = items.assign(half=items.doc_hash.map(half)).pivot_table(
                index="subject_id", columns="half", values="value", aggfunc="mean"
            )
            candidates = scores.loc[run.candidates().id]
            labels = run.subjects.set_index("id").label
            assert labels[candidates["A"].idxmax()] == row.candidate
            assert row.selection_score == pytest.approx(candidates["A"].max())
            chosen = candidates["A"].idxmax()
            parents = scores.loc[run.parents().id, "B"]
            assert row.score == pytest.approx(scores.at[chosen, "B"])
            assert row.gain_over_best == pytest.approx(scores.at[chosen, "B"] - parents.max())
            assert row.gain_over_mean == pytest.approx(scores.at[chosen, "B"] - parents.mean())
            assert row.mean_ci_low <= row.gain_over_mean <= row.mean_ci_high
            assert row.n_items == (items.doc_hash.map(half) == "B").sum() // items.subject_id.nunique()


@pytest.mark.slow
def test_pair_kinship_is_the_statistic_of_the_concatenated_weights(zoo, reference_study):
    """Task vectors against the base for the pair with one, raw weights for the pairs without (numpy)."""

    def weights(name: str) -> dict[str, np.ndarray]:
        return load_file(str(zoo.model_path(name) / "model.safetensors"))

    states = {name: weights(name) for name in ("base", "arith", "facts", "stranger")}
    names = sorted(states["base"])
    _, result = reference_study
    for figures in result.data.pairs:
        a, b = (Path(p).name for p in figures.pair.parents)
        base = states["base"] if figures.pair.base else None
        x, y = (
            np.concatenate([states[m][n].astype(np.float64).ravel() - (base[n].ravel() if base else 0) for n in names])
            for m in (a, b)
        )
        assert figures.pearson == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
        assert figures.cosine == pytest.approx(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), abs=1e-9)
        assert figures.basis == ("task vectors" if base else "raw weights")


@pytest.mark.slow
def test_a_rerun_skips_finished_pairs_and_finishes_one_without_its_done_mark(zoo, reference_study, tmp_path):
    reference_settings, reference = reference_study
    out = tmp_path / "study"
    shutil.copytree(reference_settings.out, out)
    stores = {p.key: out / "pairs" / p.key / STORE_NAME for p in reference_settings.pairs}
    modified = {key: path.stat().st_mtime_ns for key, path in stores.items()}
    (out / "pairs" / "arith_stranger" / DONE_MARK).unlink()
    result = study(settings_for(zoo, out))
    assert [(o.pair.key, o.status, o.n_evaluated) for o in result.pairs] == [
        ("arith_facts", "done before", 0),
        ("arith_stranger", "swept", 0),
        ("facts_stranger", "done before", 0),
    ]
    assert stores["arith_facts"].stat().st_mtime_ns == modified["arith_facts"]
    assert stores["facts_stranger"].stat().st_mtime_ns == modified["facts_stranger"]
    assert (out / "pairs" / "arith_stranger" / DONE_MARK).is_file()
    for pair in reference_settings.pairs:
        assert store_contents(out / "pairs" / pair.key) == store_contents(reference_settings.out / "pairs" / pair.key)
    assert result.data.best.equals(reference.data.best)


@pytest.mark.slow
def test_an_interrupted_study_resumes_where_it_stopped_with_identical_results(zoo, reference_study, tmp_path):
    """Killed (SIGKILL) after the 12th stored subject, inside the second pair; the same command finishes it."""
    reference_settings, reference = reference_study
    out = tmp_path / "study"
    args = [
        "study",
        *(a for p in reference_settings.pairs for a in ("--pairs", pair_option(p))),
        "--out",
        str(out),
        "--limit",
        str(LIMIT),
        "--backend",
        "hf",
    ]
    returncode, output = launch([sys.executable, "-m", "mergescope", *args], kill_at="store.committed:12")
    assert returncode == -9, output[-2000:]
    first_store = out / "pairs" / "arith_facts" / STORE_NAME
    assert (first_store.parent / DONE_MARK).is_file() and not (out / "pairs" / "arith_stranger" / DONE_MARK).exists()
    first_modified = first_store.stat().st_mtime_ns
    resumed = run_cli([*args, "--json"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    document = json.loads(resumed.stdout)
    assert [(p["key"], p["status"], p["skipped"]) for p in document["pairs"]] == [
        ("arith_facts", "done before", 9),
        ("arith_stranger", "swept", 3),
        ("facts_stranger", "swept", 0),
    ]
    assert first_store.stat().st_mtime_ns == first_modified
    for pair in reference_settings.pairs:
        assert store_contents(out / "pairs" / pair.key) == store_contents(reference_settings.out / "pairs" / pair.key)
    assert Path(document["report"]).is_file()
