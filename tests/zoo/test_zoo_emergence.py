"""The zoo's positive case and its negative control, swept for real and tested on the reporting half.

The knowledge parent read the domain (continued pre-training) but cannot answer questions; the instruct
parent answers questions but never read the domain. Chosen on the selection half of zoo_domain's items,
their best merge must beat both parents on the reporting half (intersection-union test, p < 0.05). The
control swaps the knowledge parent for the stranger, another lineage that never read the domain either:
nothing may emerge there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mergescope.merging.spec import SWEEPS_DIR
from mergescope.zoo import ZooManifest

STUDY_SWEEP = SWEEPS_DIR / "study.yaml"


def _sweep(zoo: ZooManifest, first: str, second: str, out: Path) -> Path:
    from mergescope.recipes.sweep import SweepSettings, sweep

    settings = SweepSettings(
        parents=[str(zoo.model_path(first)), str(zoo.model_path(second))],
        base=str(zoo.model_path("base")),
        sweep=STUDY_SWEEP,
        tasks=["zoo_domain"],
        out=out,
        backend="hf",
        progress=False,
    )
    return sweep(settings).run_dir


def _reporting_rows(run_dir: Path) -> list[dict]:
    """The rows of `mergescope emergence RUN --split selection-reporting --json` on the reporting half."""
    done = subprocess.run(
        [sys.executable, "-m", "mergescope", "emergence", str(run_dir), "--split", "selection-reporting", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [row for row in json.loads(done.stdout)["rows"] if row["split"] == "reporting"]


@pytest.mark.slow
def test_knowledge_and_instruct_merge_into_an_emergent_child(zoo: ZooManifest, tmp_path: Path) -> None:
    rows = _reporting_rows(_sweep(zoo, "facts", "knowledge", tmp_path / "positive"))
    assert [row["label"] for row in rows] == ["emergent"], rows
    assert rows[0]["p_all_parents"] < 0.05 and rows[0]["gain_over_best"] > 0.2, rows


@pytest.mark.slow
def test_nothing_emerges_across_lineages(zoo: ZooManifest, tmp_path: Path) -> None:
    rows = _reporting_rows(_sweep(zoo, "facts", "stranger", tmp_path / "control"))
    assert rows and all(row["label"] != "emergent" for row in rows), rows
