"""Model kinship ("Exploring Model Kinship for Merging LLMs", arXiv 2410.12613), streamed from safetensors.

Kinship compares the models' task vectors (weights minus the shared base's; raw weights without a base):
Pearson correlation, cosine similarity and Euclidean distance, over the whole model, per layer, per
module type and per tensor, for every pair of N models in one pass over the tensors. Each figure is
the exact statistic of the concatenated vectors of its scope, built from float64 running sums
(n, sum x, sum y, sum xy, sum x^2, sum y^2), never an average of per-tensor figures. Memory holds one
tensor block (at most BLOCK_ELEMENTS) per model: the paper's reference code holds whole models and
concatenated copies instead.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from mergescope.analysis.weights import WeightIndex, check_same_tensors, weight_index
from mergescope.errors import ConfigError
from mergescope.models import hub
from mergescope.runs.store import nan_to_null

Scope = Literal["model", "module", "layer", "tensor"]
SCOPES: tuple[Scope, ...] = ("model", "module", "layer", "tensor")
METRICS = ("pearson", "cosine", "abs_cosine", "euclidean")

# Module types by tensor-name pattern; the first match wins, so a layer norm inside attention
# ("post_attention_layernorm") counts as a norm. Unmatched tensors are "other".
MODULE_TYPES: dict[str, re.Pattern] = {
    "norm": re.compile(r"(^|\.)([^.]*norm[^.]*|ln_[^.]*)(\.|$)"),
    "lm_head": re.compile(r"(^|\.)lm_head(\.|$)"),
    "embeddings": re.compile(r"(^|\.)([^.]*embed[^.]*|wte|wpe)(\.|$)"),
    "attention": re.compile(r"(^|\.)[^.]*(attn|attention)[^.]*(\.|$)"),
    "mlp": re.compile(r"(^|\.)[^.]*(mlp|feed_forward|ffn)[^.]*(\.|$)"),
}
# A fine-tune's weights stay correlated with its base's; unrelated initialisations give about 0.
MIN_BASE_PEARSON = 0.2
LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")

# Elements of each model converted to float64 at once: small enough that the copies stay in cache.
CHUNK_ELEMENTS = 1 << 15

ABS_COSINE_NOTE = (
    "abs_cosine is |cosine|, the variant the paper's reference code computes (arXiv 2410.12613); cosine keeps the sign"
)


@dataclass(frozen=True)
class KinshipFigure:
    """Kinship of two models over one scope: the whole model, a module type, a layer or a tensor."""

    scope: Scope
    scope_name: str
    model_a: str
    model_b: str
    pearson: float
    cosine: float
    abs_cosine: float  # the paper's reference-code variant: |cosine|
    euclidean: float
    n_params: int
    relative_to_base: bool  # task vectors (model - base) if True, raw weights if False


@dataclass(frozen=True)
class KinshipReport:
    """Pairwise kinship of N models at every scope, and the order in which to merge their pairs."""

    models: tuple[str, ...]
    paths: tuple[str, ...]
    base: str | None
    figures: tuple[KinshipFigure, ...]
    n_tensors: int
    seconds: float
    # With a base: each model's raw-weight kinship with it (model_b), the evidence that it descends from it.
    base_figures: tuple[KinshipFigure, ...] = ()

    @property
    def relative_to_base(self) -> bool:
        return self.base is not None

    @property
    def compared(self) -> str:
        """Returns what the figures compare, in words."""
        if self.base is None:
            return "raw weights (no base given: these are not task vectors)"
        # the base's name as the figures give it (a hub id's repository name, not its snapshot folder's commit)
        base_name = self.base_figures[0].model_b if self.base_figures else Path(self.base).name
        return f"task vectors (model - {base_name})"

    def select(self, scope: Scope, scope_name: str | None = None) -> list[KinshipFigure]:
        """Returns the figures of one scope (and one scope name, if given)."""
        return [f for f in self.figures if f.scope == scope and scope_name in (None, f.scope_name)]

    def pair(self, model_a: str, model_b: str, scope: Scope = "model", scope_name: str = "all") -> KinshipFigure:
        """Returns the figure of a pair of models over one scope, in either order."""
        for figure in self.select(scope, scope_name):
            if (figure.model_a, figure.model_b) in {(model_a, model_b), (model_b, model_a)}:
                return figure
        raise KeyError(f"no {scope} figure {scope_name!r} for {model_a} and {model_b}")

    def matrix(self, metric: str = "pearson") -> list[list[float]]:
        """Returns the N x N whole-model matrix of a metric; the diagonal is a model with itself."""
        same = 0.0 if metric == "euclidean" else 1.0
        rows = [[same] * len(self.models) for _ in self.models]
        for figure in self.select("model"):
            i, j = self.models.index(figure.model_a), self.models.index(figure.model_b)
            rows[i][j] = rows[j][i] = getattr(figure, metric)
        return rows

    def merge_order(self) -> list[KinshipFigure]:
        """Returns the whole-model pairs, the one to merge first first (see `kinship_guided_order`);
        none without a base, since raw-weight kinship cannot tell complementary from unrelated models."""
        return kinship_guided_order(self.select("model")) if self.base else []

    def to_json(self, per_layer: bool = False) -> dict:
        """Returns the report as JSON-ready data (whole model and module types; layers if asked); an
        undefined figure (a zero-variance vector) is null."""
        scopes = {"model", "module", *(["layer"] if per_layer else [])}
        return {
            "models": list(self.models),
            "paths": list(self.paths),
            "base": self.base,
            "relative_to_base": self.relative_to_base,
            "compared": self.compared,
            "abs_cosine_note": ABS_COSINE_NOTE,
            "matrix": {metric: [[nan_to_null(v) for v in row] for row in self.matrix(metric)] for metric in METRICS},
            "merge_order": [[f.model_a, f.model_b] for f in self.merge_order()],
            "figures": [_json_figure(f) for f in self.figures if f.scope in scopes],
            "base_kinship": [_json_figure(f) for f in self.base_figures],
            "n_tensors": self.n_tensors,
            "seconds": round(self.seconds, 3),
        }

    def to_text(self, per_layer: bool = False) -> str:
        """Returns the report as an aligned table for a terminal."""
        lines = [
            f"kinship of {', '.join(self.models)}: {self.compared}",
            f"note: {ABS_COSINE_NOTE}",
            f"{'scope':<8} {'name':<14} {'model_a':<16} {'model_b':<16} {'pearson':>8} {'cosine':>8}"
            f" {'|cosine|':>8} {'euclidean':>10} {'params':>11}",
        ]
        scopes: tuple[Scope, ...] = ("model", "module", "layer") if per_layer else ("model", "module")
        for figure in (f for scope in scopes for f in self.select(scope)):
            lines.append(
                f"{figure.scope:<8} {figure.scope_name:<14} {figure.model_a:<16} {figure.model_b:<16}"
                f" {figure.pearson:>8.4f} {figure.cosine:>8.4f} {figure.abs_cosine:>8.4f}"
                f" {figure.euclidean:>10.4f} {figure.n_params:>11}"
            )
        if self.base_figures:
            lines.append(
                f"descent from the base (raw-weight Pearson, {self.base_figures[0].scope_name}): "
                + ", ".join(f"{f.model_a} {f.pearson:.4f}" for f in self.base_figures)
            )
        if len(self.models) > 2 and self.base:
            lines.append(
                "kinship-guided merge order (lowest task-vector Pearson first): "
                + "; ".join(f"{rank}. {f.model_a} + {f.model_b}" for rank, f in enumerate(self.merge_order(), 1))
            )
        elif len(self.models) > 2:
            lines.append("no kinship-guided merge order without --base: it ranks task vectors")
        return "\n".join(lines)


def _json_figure(figure: KinshipFigure) -> dict:
    return {k: nan_to_null(v) if isinstance(v, float) else v for k, v in asdict(figure).items()}


def kinship_guided_order(pairs: Sequence[KinshipFigure]) -> list[KinshipFigure]:
    """Returns the pairs ordered for merging: least kin (lowest Pearson) first, undefined kinship last.

    The ModelKinship paper's Top-k Greedy Merging finds that merging highly kin models stagnates (a
    local optimum) and escapes it by merging the best model with its least kin partner. Without
    scores to pick the top k, mergescope orders all pairs by that criterion: the least kin pair is the
    one whose merge may add most. It needs models that share a base (checked by `kinship`): unrelated
    models are barely kin too, and merging them rarely works.
    """
    return sorted(pairs, key=lambda f: (math.isnan(f.pearson), f.pearson, f.model_a, f.model_b))


def module_type(tensor_name: str) -> str:
    """Returns the module type of a tensor from its name (MODULE_TYPES), or 'other'."""
    return next((kind for kind, pattern in MODULE_TYPES.items() if pattern.search(tensor_name)), "other")


def layer_index(tensor_name: str) -> int | None:
    """Returns the layer number in a name like 'model.layers.3.mlp.up_proj.weight', or None."""
    match = LAYER_INDEX.search(tensor_name)
    return int(match.group(1)) if match else None


class Moments:
    """Running float64 sums of N vectors read piece by piece: the count, each sum, every sum of products."""

    def __init__(self, n_vectors: int):
        self.count = 0
        self.sums = np.zeros(n_vectors)
        self.products = np.zeros((n_vectors, n_vectors))  # products[i, i] is the sum of squares of i

    @classmethod
    def of(cls, gram: np.ndarray) -> Moments:
        """Returns the sums held by the Gram matrix of N vectors and a vector of ones (see TaskVectorReader)."""
        moments = cls(len(gram) - 1)
        moments.count, moments.sums, moments.products = int(gram[-1, -1]), gram[:-1, -1], gram[:-1, :-1]
        return moments

    def mapped(self, matrix: np.ndarray) -> Moments:
        """Returns the sums of the vectors `matrix` @ (these vectors): a linear map carries them exactly."""
        moments = Moments(len(matrix))
        moments.count, moments.sums, moments.products = (
            self.count,
            matrix @ self.sums,
            matrix @ self.products @ matrix.T,
        )
        return moments

    def add(self, other: Moments) -> None:
        self.count += other.count
        self.sums += other.sums
        self.products += other.products

    def figure(
        self, i: int, j: int, scope: Scope, scope_name: str, names: Sequence[str], relative_to_base: bool
    ) -> KinshipFigure:
        """Returns the kinship of vectors i and j over everything added so far."""
        n, sx, sy = self.count, float(self.sums[i]), float(self.sums[j])
        sxx, syy, sxy = float(self.products[i, i]), float(self.products[j, j]), float(self.products[i, j])
        covariance, var_x, var_y = n * sxy - sx * sy, n * sxx - sx * sx, n * syy - sy * sy
        cosine = _ratio(sxy, sxx * syy)
        return KinshipFigure(
            scope=scope,
            scope_name=scope_name,
            model_a=names[i],
            model_b=names[j],
            pearson=_ratio(covariance, var_x * var_y),
            cosine=cosine,
            abs_cosine=abs(cosine),
            euclidean=math.sqrt(max(sxx + syy - 2 * sxy, 0.0)),
            n_params=int(n),
            relative_to_base=relative_to_base,
        )


def _ratio(numerator: float, squared_denominator: float) -> float:
    """Returns numerator / sqrt(squared_denominator) clamped to [-1, 1]; NaN for a zero-variance vector."""
    if not squared_denominator > 0:
        return math.nan
    return max(-1.0, min(1.0, numerator / math.sqrt(squared_denominator)))


def kinship(
    models: Sequence[str | Path],
    base: str | Path | None = None,
    names: Sequence[str] | None = None,
    require_shared_base: bool = True,
) -> KinshipReport:
    """Returns the pairwise kinship of the models, streamed tensor by tensor (each tensor read once).

    `models` and `base` are directories or hub ids (org/name[@revision]). `names` (default: the directory or
    repository names, numbered if two are equal) name the models in the figures.
    With a base, a model whose weights barely correlate with the base's was not fine-tuned from it, and
    its task vector means nothing: that raises ConfigError unless `require_shared_base` is False.
    """
    started = time.perf_counter()
    if len(models) < 2:
        raise ConfigError(f"kinship needs at least two models, got {len(models)}", hint="pass A B [C ...]")
    names = names or _unique_names(models)
    indexes = [weight_index(hub.local_path(model), name) for model, name in zip(models, names, strict=True)]
    base_index = weight_index(hub.local_path(base), hub.model_name(base)) if base is not None else None
    check_same_tensors([*indexes, *([base_index] if base_index else [])])
    sums: dict[tuple[Scope, str], Moments] = {}
    reader = TaskVectorReader(indexes, base_index)
    n_vectors = len(indexes) + (base_index is not None)
    reading_order = sorted(indexes[0].shapes, key=lambda name: (str(indexes[0].files[name]), name))
    for name in reading_order:
        for rows in indexes[0].row_blocks(name):
            piece = Moments.of(reader.gram(name, rows))
            for key in _scopes_of(name):
                sums.setdefault(key, Moments(n_vectors)).add(piece)
    names = [index.model for index in indexes]
    base_figures = _base_figures(sums, names, base_index.model) if base_index else ()
    if require_shared_base and base_index is not None:
        _check_shared_base(base_figures, base_index)
    figures = tuple(
        moments.figure(i, j, scope, scope_name, names, base_index is not None)
        for (scope, scope_name), moments in sorted(sums.items(), key=lambda item: _scope_order(*item[0]))
        for i in range(len(names))
        for j in range(i + 1, len(names))
    )
    return KinshipReport(
        models=tuple(names),
        paths=tuple(str(i.directory) for i in indexes),
        base=str(base_index.directory) if base_index else None,
        figures=figures,
        n_tensors=len(reading_order),
        seconds=time.perf_counter() - started,
        base_figures=base_figures,
    )


def _base_figures(sums: dict[tuple[Scope, str], Moments], names: list[str], base_name: str) -> tuple:
    """Returns each model's raw-weight kinship with the base over its attention and MLP matrices.

    Norm weights are left out: they start at one in every model, so they are kin by construction.
    """
    matrices = [sums[key] for key in (("module", "attention"), ("module", "mlp")) if key in sums]
    scope_name = "attention+mlp" if matrices else "all"
    combined = Moments(len(names) + 1)
    for moments in matrices or [sums[("model", "all")]]:
        combined.add(moments)
    to_raw = np.eye(len(names) + 1)
    to_raw[:-1, -1] = 1.0  # a model's weights are its task vector plus the base's weights
    raw = combined.mapped(to_raw)
    return tuple(
        raw.figure(i, len(names), "module", scope_name, [*names, base_name], relative_to_base=False)
        for i in range(len(names))
    )


def _check_shared_base(base_figures: Sequence[KinshipFigure], base: WeightIndex) -> None:
    for figure in base_figures:
        if not figure.pearson >= MIN_BASE_PEARSON:
            raise ConfigError(
                f"{figure.model_a} does not descend from the base {base.directory}: its {figure.scope_name} weights "
                f"correlate {figure.pearson:.3f} with the base's (fine-tunes keep more than {MIN_BASE_PEARSON})",
                hint="give the base these models were fine-tuned from, or leave out --base to compare raw weights",
            )


class TaskVectorReader:
    """Reads one block of a tensor from every model and reduces it to float64 sums, in cache-sized chunks.

    Each chunk is converted into the rows of a small float64 matrix: the N task vectors, then the
    base's raw weights (with a base), then a row of ones. Its Gram matrix (matrix @ matrix.T) holds
    every sum of products, every sum (the last column) and the count (the corner). Working chunk by
    chunk keeps the float64 copies in the CPU cache, so memory traffic is little more than reading the
    stored weights once.
    """

    def __init__(self, indexes: Sequence[WeightIndex], base: WeightIndex | None):
        self.sources = [*indexes, *([base] if base is not None else [])]
        self.n_models = len(indexes)
        self.chunk = np.ones((len(self.sources) + 1, CHUNK_ELEMENTS))

    def gram(self, name: str, rows: slice | None) -> np.ndarray:
        """Returns the Gram matrix of the block `rows` of tensor `name` (see the class)."""
        blocks = [_flat_numpy(source, name, rows) for source in self.sources]
        gram = np.zeros((len(self.chunk), len(self.chunk)))
        for start in range(0, blocks[0].size, CHUNK_ELEMENTS):
            stop = min(start + CHUNK_ELEMENTS, blocks[0].size)
            matrix = self.chunk[:, : stop - start]
            for row, block in enumerate(blocks):
                matrix[row] = block[start:stop]  # converts to float64 in place
            if len(blocks) > self.n_models:
                matrix[: self.n_models] -= matrix[self.n_models]  # task vectors: minus the base
            gram += matrix @ matrix.T
        return gram


def _flat_numpy(index: WeightIndex, name: str, rows: slice | None) -> np.ndarray:
    """Returns a block of a tensor as a flat numpy array (floats numpy lacks, like bfloat16, as float32).

    numpy, not torch, does the arithmetic: torch's small matrix products stall when other processes
    share the CPU cores (measured 2-10x slower here)."""
    tensor = index.read(name, dtype=None, rows=rows).flatten()
    if tensor.dtype in (torch.bfloat16, torch.float16) or not tensor.dtype.is_floating_point:
        tensor = tensor.to(torch.float64)
    return tensor.numpy()


def _scopes_of(tensor_name: str) -> list[tuple[Scope, str]]:
    layer = layer_index(tensor_name)
    scopes: list[tuple[Scope, str]] = [("model", "all"), ("module", module_type(tensor_name))]
    if layer is not None:
        scopes.append(("layer", str(layer)))
    return scopes + [("tensor", tensor_name)]


def _scope_order(scope: Scope, scope_name: str) -> tuple:
    named = list(MODULE_TYPES) + ["other"]
    position = int(scope_name) if scope == "layer" else named.index(scope_name) if scope == "module" else 0
    return SCOPES.index(scope), position, scope_name


def _unique_names(models: Sequence[str | Path]) -> list[str]:
    names = [hub.model_name(model) for model in models]
    if len(set(names)) == len(names):
        return names
    return [f"{name}-{i + 1}" for i, name in enumerate(names)]
