"""Hub ids as models, offline: the zoo laid out as huggingface_hub's own cache stands in for the Hub.

`hub_cache` lays zoo/arith, zoo/facts and zoo/base out in the cache layout (tests/helpers/hub_cache.py) and points
huggingface_hub at it; HF_HUB_OFFLINE=1 (conftest) makes `snapshot_download` answer from it alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from helpers.hub_cache import add_to_cache, repo_folder
from mergescope.errors import ConfigError
from mergescope.models import hub
from mergescope.models.parents import resolve_model, resolve_parents

NAMES = ("arith", "facts", "base")
ONE_CANDIDATE = "name: one\nmethods:\n  - method: slerp\n    parameters: {t: 0.5}\n"


@pytest.fixture
def hub_cache(zoo, tmp_path, monkeypatch):
    """The zoo's arith, facts and base as hub models zoo/NAME (refs main and v1), in a cache huggingface_hub uses;
    returns the cache folder and each name's commit sha."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    shas = {name: add_to_cache(cache, f"zoo/{name}", zoo.model_path(name), refs=("main", "v1")) for name in NAMES}
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))  # read when snapshot_download is called
    return cache, shas


def snapshot_of(cache: Path, name: str, sha: str) -> Path:
    return repo_folder(cache, f"zoo/{name}") / "snapshots" / sha


def test_snapshot_download_answers_offline_from_the_cache_layout(hub_cache, zoo):
    cache, shas = hub_cache
    for model_id, revision in (
        ("zoo/arith", "main"),
        ("zoo/arith@v1", "v1"),
        (f"zoo/arith@{shas['arith']}", shas["arith"]),
    ):
        folder, resolved = hub.snapshot(model_id)
        assert folder == snapshot_of(cache, "arith", shas["arith"])
        assert (resolved.repo_id, resolved.revision, resolved.sha) == ("zoo/arith", revision, shas["arith"])
    copied = {f.name: f.read_bytes() for f in folder.iterdir()}
    assert copied == {f.name: f.read_bytes() for f in zoo.model_path("arith").iterdir()}


def test_hub_ids_resolve_as_parents_named_by_their_repository(hub_cache):
    cache, shas = hub_cache
    parents = resolve_parents(["zoo/arith", "zoo/facts@v1"], "zoo/base")
    assert [(m.name, m.path, m.hub.pinned) for m in parents.models()] == [
        (name, snapshot_of(cache, name, shas[name]), f"zoo/{name}@{shas[name]}") for name in NAMES
    ]


def test_study_pairs_take_hub_ids(hub_cache):
    from mergescope.cli.app import _study_pair

    pair = _study_pair("zoo/arith_facts=zoo/arith,zoo/facts@v1,zoo/base")
    parents = resolve_parents(list(pair.parents), pair.base)  # as the study checks its pairs
    assert [(m.name, m.hub.repo_id) for m in parents.models()] == [(name, f"zoo/{name}") for name in NAMES]


def test_an_existing_path_wins_over_a_hub_id(hub_cache, zoo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(zoo.model_path("facts"), tmp_path / "zoo" / "arith")  # ./zoo/arith holds facts
    assert not hub.is_hub_id("zoo/arith")
    model = resolve_model("zoo/arith")
    assert (model.path, model.hub) == (tmp_path / "zoo" / "arith", None)
    assert [hub.is_hub_id(text) for text in ("zoo/facts", "zoo/facts@v1", "a/b/c", "/zoo/x", "zoo", "zoo/x--y")] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_a_repository_whose_listing_shows_only_pickles_is_refused_unless_allowed(hub_cache, zoo):
    """What an online fetch without pickles leaves: the listing (trees/SHA.json) names pytorch_model.bin, the
    snapshot holds configs only. With --allow-pickle the pickles are asked for, and offline they are missing."""
    cache, _ = hub_cache
    sha = add_to_cache(cache, "zoo/old", zoo.model_path("arith"), skip=("model.safetensors",))
    listing = {
        "format_version": 1,
        "files": {
            name: {"size": 1, "blob_id": "0" * 40} for name in ("config.json", "tokenizer.json", "pytorch_model.bin")
        },
    }
    (repo_folder(cache, "zoo/old") / "trees").mkdir()
    (repo_folder(cache, "zoo/old") / "trees" / f"{sha}.json").write_text(json.dumps(listing))
    with pytest.raises(
        ConfigError, match=r"zoo/old: the repository holds only pickled weights \(pytorch_model.bin\)"
    ) as refused:
        hub.snapshot("zoo/old")
    assert "--allow-pickle" in refused.value.hint
    with pytest.raises(ConfigError, match="zoo/old: its snapshot in the hub cache lacks files"):
        hub.snapshot("zoo/old", allow_pickle=True)


def test_kinship_of_hub_ids_equals_kinship_of_their_directories(hub_cache, zoo):
    from mergescope.analysis.kinship import kinship

    by_id = kinship(["zoo/arith", "zoo/facts"], "zoo/base")
    by_path = kinship([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))
    assert by_id.models == ("arith", "facts") and by_id.compared == by_path.compared == "task vectors (model - base)"
    assert by_id.figures == by_path.figures and by_id.base_figures == by_path.base_figures


def test_a_mergekit_config_naming_hub_ids_merges_as_one_naming_directories(hub_cache, zoo, tmp_path):
    from mergescope.merging.merge import merge_file

    cache, shas = hub_cache
    config = {
        "merge_method": "slerp",
        "base_model": "{arith}",
        "parameters": {"t": 0.5},
        "dtype": "float32",
        "slices": [
            {"sources": [{"model": "{arith}", "layer_range": [0, 2]}, {"model": "{facts}", "layer_range": [0, 2]}]}
        ],
    }
    outputs = {}
    for kind, arith, facts in (
        ("ids", "zoo/arith", "zoo/facts@v1"),
        ("dirs", zoo.model_path("arith"), zoo.model_path("facts")),
    ):
        text = yaml.safe_dump(config).replace("'{arith}'", str(arith)).replace("'{facts}'", str(facts))
        (tmp_path / f"{kind}.yaml").write_text(text)
        outputs[kind] = merge_file(str(tmp_path / f"{kind}.yaml"), tmp_path / kind)
    merged = {kind: load_file(str(out / "model.safetensors")) for kind, out in outputs.items()}
    assert merged["ids"].keys() == merged["dirs"].keys()
    assert all(merged["ids"][name].equal(merged["dirs"][name]) for name in merged["dirs"])
    written = yaml.safe_load((outputs["ids"] / "mergekit_config.yml").read_text())  # the commits it was made of
    assert written["base_model"] == str(snapshot_of(cache, "arith", shas["arith"]))


def test_serve_takes_a_hub_id(hub_cache):
    from mergescope.serving.server import resolve_target

    cache, shas = hub_cache
    target = resolve_target("zoo/facts@v1")
    assert (target.model_dir, target.served_name) == (snapshot_of(cache, "facts", shas["facts"]), "zoo/facts@v1")


def test_a_sweep_of_hub_ids_records_their_commits_and_refuses_to_resume_on_others(hub_cache, zoo, tmp_path):
    from mergescope.analysis.run_analysis import analyse_run
    from mergescope.analysis.run_data import load_run
    from mergescope.merging.merge import merge_in_memory
    from mergescope.recipes.sweep import SweepSettings, plan_sweep, sweep
    from mergescope.report.sections import provenance
    from mergescope.runs.directory import read_run_meta

    cache, shas = hub_cache
    spec = tmp_path / "one.yaml"
    spec.write_text(ONE_CANDIDATE)

    def settings(first: str, second: str, base: str = "zoo/base", out: str = "run") -> SweepSettings:
        return SweepSettings(
            parents=[first, second],
            base=base,
            sweep=spec,
            tasks=["zoo_arith"],
            task_paths=[zoo.task_yaml_dir()],
            out=tmp_path / out,
            backend="hf",
            limit=2,
            progress=False,
        )

    result = sweep(settings("zoo/arith", "zoo/facts@v1"))
    assert (result.n_evaluated, result.n_skipped) == (4, 0)
    meta = read_run_meta(result.run_dir)
    assert meta.hub_commits == {f"zoo/{name}": shas[name] for name in NAMES}
    assert meta.parent_names == ("arith", "facts")
    rows = dict(provenance(analyse_run(load_run(result.run_dir))).settings)  # the report names every commit
    assert rows["hub commits"] == ", ".join(f"zoo/{name}@{shas[name]}" for name in sorted(NAMES))
    # the candidate's merged weights equal those of the same merge of the zoo's directories
    directories = [str(zoo.model_path(name)) for name in NAMES]
    expected = merge_in_memory(plan_sweep(settings(*directories, out="dirs")).candidates[0])
    stored = load_file(str(next((result.run_dir / "merges").iterdir()) / "model.safetensors"))
    assert stored.keys() == expected.keys() and all(stored[name].equal(expected[name]) for name in expected)

    # zoo/arith's main moves to a new commit: resuming refuses, pinning the swept commit resumes
    moved = add_to_cache(tmp_path / "other", "zoo/arith", zoo.model_path("arith"), sha="f" * 40)
    shutil.move(str(snapshot_of(tmp_path / "other", "arith", moved)), repo_folder(cache, "zoo/arith") / "snapshots")
    (repo_folder(cache, "zoo/arith") / "refs" / "main").write_text(moved)
    with pytest.raises(
        ConfigError,
        match=rf"was swept with zoo/arith at commit {shas['arith'][:12]}, but "
        rf"zoo/arith@main now resolves to ffffffffffff",
    ) as refused:
        sweep(settings("zoo/arith", "zoo/facts@v1"))
    assert f"zoo/arith@{shas['arith']}" in refused.value.hint
    resumed = sweep(settings(f"zoo/arith@{shas['arith']}", "zoo/facts"))
    assert (resumed.n_evaluated, resumed.n_skipped) == (0, 4)


def test_only_the_shards_an_index_lists_are_asked_for(tmp_path):
    """A repository may ship its weights twice (Mistral's consolidated.safetensors beside the shards)."""
    assert hub._safetensors_files(tmp_path) == ("*.safetensors",)
    weight_map = {
        "a.weight": "model-00002-of-00002.safetensors",
        "b.weight": "model-00001-of-00002.safetensors",
        "c.weight": "model-00001-of-00002.safetensors",
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert hub._safetensors_files(tmp_path) == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
