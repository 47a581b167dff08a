"""What mergekit's SLERP really did to each tensor: the angle between the parents' tensors, and whether
it fell back to linear interpolation.

mergekit's `slerp()` (merge_methods/slerp.py) normalises each tensor of the two inputs to unit length,
takes their dot product, and interpolates linearly wherever |dot| > 0.9995: nearly parallel tensors,
common among fine-tunes of one base. A "SLERP" candidate may then be mostly a linear merge; the
diagnostics say how much. The t of each tensor (scalar, per-layer gradient or name filter) is taken
from mergekit's own merge planner, so it is the t mergekit merges that tensor with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from mergescope.analysis.weights import WeightIndex, weight_index
from mergescope.errors import ConfigError
from mergescope.runs.store import ResultsStore, nan_to_null, null_to_nan

if TYPE_CHECKING:
    import pandas as pd

    from mergescope.analysis.run_data import RunData
    from mergescope.runs.records import Candidate

# mergekit's slerp() defaults; its merge method passes neither, so every SLERP merge uses these.
DOT_THRESHOLD = 0.9995
NORM_EPS = 1e-8


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor of a SLERP merge as mergekit plans it: its two inputs (v0 from the base) and t."""

    output: str
    base_path: Path
    base_names: tuple[str, ...]  # the tensor's name in the base model, then its aliases
    other_path: Path
    other_names: tuple[str, ...]
    t: float
    dtype: str | None  # the dtype mergekit loads the inputs in (the config's dtype)


@dataclass(frozen=True)
class TensorInterpolation:
    """How one tensor was interpolated: the parents' angle and whether SLERP fell back to linear."""

    tensor: str
    t: float
    cosine: float  # mergekit's clamped dot of the unit-normalised parent tensors
    angle_degrees: float
    linear: bool
    n_params: int


@dataclass(frozen=True)
class SlerpDiagnostics:
    """Per-tensor interpolation of one SLERP candidate, and the shares interpolated linearly."""

    candidate_id: str
    label: str
    tensors: tuple[TensorInterpolation, ...]

    @property
    def linear_tensor_share(self) -> float:
        """Returns the fraction of tensors mergekit interpolated linearly."""
        return sum(t.linear for t in self.tensors) / len(self.tensors) if self.tensors else math.nan

    @property
    def linear_param_share(self) -> float:
        """Returns the fraction of parameters (elements) mergekit interpolated linearly."""
        total = sum(t.n_params for t in self.tensors)
        return sum(t.n_params for t in self.tensors if t.linear) / total if total else math.nan

    @property
    def angles_degrees(self) -> list[float]:
        """Returns the per-tensor angles between the parents, in tensor order."""
        return [t.angle_degrees for t in self.tensors]


def mergekit_cosine(v0: torch.Tensor, v1: torch.Tensor) -> tuple[float, bool]:
    """Returns (dot of the unit-normalised tensors, whether slerp() interpolates them linearly).

    Computed step for step as mergekit's slerp() does for one tensor (same dtype, chunks, eps and
    comparison), so that the linear verdict agrees with mergekit's exactly, not just up to rounding.
    """
    from mergekit.merge_methods.slerp import _CHUNK_ELEMENTS

    dtype = torch.float64 if v0.dtype == torch.float64 else torch.float32
    a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    if not a.shape[1]:
        return math.nan, True
    starts = range(0, a.shape[1], _CHUNK_ELEMENTS)
    norm_a, norm_b = (_chunked_norm(x, dtype, starts, _CHUNK_ELEMENTS) for x in (a, b))
    dot_parts = [
        ((a[:, s : s + _CHUNK_ELEMENTS].to(dtype) / norm_a) * (b[:, s : s + _CHUNK_ELEMENTS].to(dtype) / norm_b)).sum(
            dim=1, keepdim=True
        )
        for s in starts
    ]
    dot = torch.stack(dot_parts).sum(dim=0).clamp(-1, 1)
    return float(dot), bool(dot.abs() > DOT_THRESHOLD)


def _chunked_norm(x: torch.Tensor, dtype: torch.dtype, starts: range, chunk: int) -> torch.Tensor:
    """Returns the norm as slerp() takes it: the norm of chunk norms, and 1 in place of a near-zero norm."""
    parts = [torch.linalg.vector_norm(x[:, s : s + chunk].to(dtype), dim=1, keepdim=True) for s in starts]
    norm = torch.linalg.vector_norm(torch.stack(parts), dim=0)
    return torch.where(norm > NORM_EPS, norm, 1)


def plan_slerp(mergekit_config: dict) -> list[PlannedTensor]:
    """Returns every tensor of a SLERP merge with its two inputs and t, from mergekit's merge planner."""
    from mergekit.config import MergeConfiguration

    from mergescope.merging.merge import planned_saves

    config = MergeConfiguration.model_validate(mergekit_config)
    if config.merge_method != "slerp":
        raise ConfigError(f"SLERP diagnostics need a slerp merge, not {config.merge_method!r}")
    tasks = planned_saves(config)
    planned = (_planned(task.tensor_task, config.dtype) for task in tasks)
    return [p for p in planned if p is not None]


def _planned(task, dtype: str | None) -> PlannedTensor | None:
    """Returns the planned tensor of one mergekit merge task, or None for a single-input passthrough."""
    gather = getattr(task.gather_tensors, "gather_tensors", task.gather_tensors)  # under a vocabulary permutation
    inputs = dict(gather.weight_info.items())
    others = [model for model in task.model_order if model != task.base_model]
    if task.base_model not in inputs or len(others) != 1:
        return None
    base_weight, other_weight = inputs[task.base_model], inputs[others[0]]
    return PlannedTensor(
        output=task.output_weight.name,
        base_path=Path(task.base_model.model.path),
        base_names=(base_weight.name, *(base_weight.aliases or ())),
        other_path=Path(others[0].model.path),
        other_names=(other_weight.name, *(other_weight.aliases or ())),
        t=float(task.parameters["t"]),
        dtype=base_weight.force_dtype or dtype,
    )


class _ParentTensors:
    """Reads the planned inputs and caches each parent pair's cosines: they depend on the pair, not on t."""

    def __init__(self):
        self.indexes: dict[Path, WeightIndex] = {}
        self.cosines: dict[tuple, tuple[float, bool, int]] = {}

    def cosine(self, planned: PlannedTensor) -> tuple[float, bool, int] | None:
        """Returns (cosine, linear, n_params) of a planned tensor; None if an input lacks it (passthrough)."""
        base, other = self._index(planned.base_path), self._index(planned.other_path)
        base_name = next((n for n in planned.base_names if n in base.shapes), None)
        other_name = next((n for n in planned.other_names if n in other.shapes), None)
        if base_name is None or other_name is None:
            return None
        key = (planned.base_path, base_name, planned.other_path, other_name, planned.dtype)
        if key not in self.cosines:
            dtype = getattr(torch, planned.dtype) if planned.dtype else None
            v0, v1 = base.read(base_name, dtype), other.read(other_name, dtype)
            if not v0.is_floating_point():  # mergekit copies integer buffers through unmerged
                return None
            self.cosines[key] = (*mergekit_cosine(v0, v1), v0.numel())
        return self.cosines[key]

    def _index(self, path: Path) -> WeightIndex:
        if path not in self.indexes:
            self.indexes[path] = weight_index(path)
        return self.indexes[path]


def diagnose(candidates: Sequence[Candidate]) -> list[SlerpDiagnostics]:
    """Returns the diagnostics of every SLERP candidate among `candidates` (others are skipped)."""
    parents = _ParentTensors()
    return [_diagnose(c, parents) for c in candidates if c.mergekit_config.get("merge_method") == "slerp"]


def _diagnose(candidate: Candidate, parents: _ParentTensors) -> SlerpDiagnostics:
    tensors = []
    for planned in plan_slerp(candidate.mergekit_config):
        measured = parents.cosine(planned)
        if measured is not None:
            cosine, linear, n_params = measured
            tensors.append(
                TensorInterpolation(
                    tensor=planned.output,
                    t=planned.t,
                    cosine=cosine,
                    angle_degrees=math.degrees(math.acos(cosine)) if not math.isnan(cosine) else math.nan,
                    linear=linear,
                    n_params=n_params,
                )
            )
    return SlerpDiagnostics(candidate_id=candidate.id, label=candidate.label, tensors=tuple(tensors))


# -- the results store --------------------------------------------------------------------------
SLERP_SCHEMA = """
CREATE TABLE IF NOT EXISTS slerp_diagnostics (
    candidate_id TEXT NOT NULL, tensor TEXT NOT NULL, t REAL NOT NULL, cosine REAL, angle_degrees REAL,
    linear INTEGER NOT NULL, n_params INTEGER NOT NULL, PRIMARY KEY (candidate_id, tensor)
);
"""


def save_slerp_diagnostics(store: ResultsStore, diagnostics: Sequence[SlerpDiagnostics]) -> None:
    """Writes per-tensor rows of each candidate's diagnostics, replacing the candidate's earlier rows."""
    _create_table(store)
    with store.transaction() as db:
        for candidate in diagnostics:
            db.execute("DELETE FROM slerp_diagnostics WHERE candidate_id = ?", (candidate.candidate_id,))
            db.executemany(
                "INSERT INTO slerp_diagnostics VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        candidate.candidate_id,
                        t.tensor,
                        t.t,
                        nan_to_null(t.cosine),
                        nan_to_null(t.angle_degrees),
                        int(t.linear),
                        t.n_params,
                    )
                    for t in candidate.tensors
                ],
            )


def load_slerp_diagnostics(store: ResultsStore, candidate_id: str) -> SlerpDiagnostics:
    """Returns the stored diagnostics of one candidate (no tensors if none are stored)."""
    _create_table(store)
    rows = store.query("SELECT * FROM slerp_diagnostics WHERE candidate_id = ? ORDER BY rowid", candidate_id)
    label = store.query("SELECT label FROM subjects WHERE id = ?", candidate_id)
    tensors = tuple(
        TensorInterpolation(
            tensor=r["tensor"],
            t=r["t"],
            cosine=null_to_nan(r["cosine"]),
            angle_degrees=null_to_nan(r["angle_degrees"]),
            linear=bool(r["linear"]),
            n_params=r["n_params"],
        )
        for r in rows
    )
    return SlerpDiagnostics(
        candidate_id=candidate_id, label=label[0]["label"] if label else candidate_id, tensors=tensors
    )


def record_slerp_diagnostics(store: ResultsStore, candidates: Sequence[Candidate]) -> None:
    """Computes and stores the diagnostics of the SLERP candidates the store does not hold yet."""
    _create_table(store)
    done = {row["candidate_id"] for row in store.query("SELECT DISTINCT candidate_id FROM slerp_diagnostics")}
    save_slerp_diagnostics(store, diagnose([c for c in candidates if c.id not in done]))


def slerp_summary(run: RunData | str | Path) -> pd.DataFrame:
    """Returns one row per SLERP candidate of a run (loaded, or its directory): linear shares and the angles'
    median and range."""
    import pandas as pd

    from mergescope.analysis.run_data import RunData, load_run

    data = run if isinstance(run, RunData) else load_run(run)
    table = data.tables.get("slerp_diagnostics")
    if table is None or table.empty:
        return pd.DataFrame(
            columns=[
                "candidate_id",
                "label",
                "linear_tensor_share",
                "linear_param_share",
                "median_angle_degrees",
                "min_angle_degrees",
                "max_angle_degrees",
            ]
        )
    table = table.assign(linear_params=table.n_params * table.linear)
    summary = table.groupby("candidate_id", sort=False).agg(
        linear_tensor_share=("linear", "mean"),
        linear_params=("linear_params", "sum"),
        n_params=("n_params", "sum"),
        median_angle_degrees=("angle_degrees", "median"),
        min_angle_degrees=("angle_degrees", "min"),
        max_angle_degrees=("angle_degrees", "max"),
    )
    summary.insert(1, "linear_param_share", summary.pop("linear_params") / summary.pop("n_params"))
    labels = data.subjects.set_index("id")["label"].rename("label")
    return summary.join(labels).reset_index()


def _create_table(store: ResultsStore) -> None:
    with store.transaction() as db:
        db.executescript(SLERP_SCHEMA)
