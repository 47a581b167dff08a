"""The kinship table of a results store: written once per parent set, read back as records and frames."""

from __future__ import annotations

import math

import pytest

from mergescope.analysis.kinship import kinship
from mergescope.analysis.kinship_store import kinship_frame, load_kinship, record_kinship, save_kinship
from mergescope.models.parents import resolve_parents
from mergescope.runs.store import STORE_NAME, ResultsStore


def test_kinship_is_stored_once_per_parent_set_and_read_back_as_records_and_frames(zoo, tmp_path):
    parents = resolve_parents([zoo.model_path("arith"), zoo.model_path("facts")], zoo.model_path("base"))
    store = ResultsStore(tmp_path / STORE_NAME)
    record_kinship(store, parents)
    stored = load_kinship(store)
    record_kinship(store, parents)  # already there: not computed or written again
    assert load_kinship(store) == stored
    direct = kinship([p.path for p in parents.parents], parents.base.path)
    assert stored == [*direct.figures, *direct.base_figures]
    save_kinship(store, direct)  # rewriting the same parent set replaces its rows
    store.close()
    assert len(load_kinship(ResultsStore(tmp_path / STORE_NAME))) == len(stored)
    frame = kinship_frame(tmp_path, scope="model")
    assert list(frame[["model_a", "model_b"]].iloc[0]) == ["arith", "facts"]
    assert frame.pearson.iloc[0] == pytest.approx(direct.pair("arith", "facts").pearson)


@pytest.mark.slow
def test_every_sweep_stores_its_parents_kinship(default_run):
    settings, result = default_run
    frame = kinship_frame(result.run_dir)
    whole = frame[frame.scope == "model"]
    assert len(whole) == 1 and bool(whole.relative_to_base.iloc[0])
    assert set(frame.scope) == {"model", "module", "layer", "tensor"}
    direct = kinship(settings.parents, settings.base).pair("arith", "facts")
    assert whole.pearson.iloc[0] == pytest.approx(direct.pearson, abs=1e-12)
    assert not math.isnan(whole.euclidean.iloc[0])
