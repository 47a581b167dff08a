"""Paired item-level statistics: every test's p-value and every interval comes from scipy.

Two models are compared on the same items, so the tests are paired:
  - binary outcomes (solved or not): exact McNemar, i.e. a binomial test of the discordant pairs;
  - graded outcomes (judge scores, or binary outcomes averaged over merge seeds): Wilcoxon signed-rank.
Both drop the items on which the two models agree (McNemar's concordant pairs, Wilcoxon's zero
differences), so `wins` and `losses` are exactly the items that carry evidence.

Holm's adjustment is written out here: statsmodels' `multipletests(method="holm")` calls gc.collect() on
every call, 0.57 s each in a process holding torch, which was 27 of the 73 s the demo study's report took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeGuard

import numpy as np
from scipy import stats

from mergescope.errors import ConfigError, did_you_mean

ScoreKind = Literal["binary", "graded"]
PairedTestName = Literal["mcnemar-exact", "wilcoxon"]
Correction = Literal["holm", "bh"]  # the user's multiple-comparison correction (CORRECTIONS)


@dataclass(frozen=True, kw_only=True)
class PairedComparison:
    """A child compared with one reference model on the same items."""

    test: PairedTestName
    n_items: int
    wins: int  # items the child scores higher on (0->1 for binary outcomes)
    losses: int  # items the child scores lower on (1->0)
    mean_difference: float  # mean over items of child - reference
    p_greater: float  # one-sided: the child is better
    p_less: float  # one-sided: the child is worse
    p_two_sided: float


def _compared(
    test: PairedTestName, n_items: int, wins: int, losses: int, mean_difference: float, p: dict[str, float]
) -> PairedComparison:
    """The comparison with scipy's p-values by alternative ("greater", "less", "two-sided")."""
    return PairedComparison(
        test=test,
        n_items=n_items,
        wins=wins,
        losses=losses,
        mean_difference=mean_difference,
        p_greater=float(p["greater"]),
        p_less=float(p["less"]),
        p_two_sided=float(p["two-sided"]),
    )


def _no_evidence(test: PairedTestName, n_items: int, mean_difference: float) -> PairedComparison:
    """No item tells the two apart: every p-value is 1."""
    return _compared(test, n_items, 0, 0, mean_difference, {"greater": 1.0, "less": 1.0, "two-sided": 1.0})


def _counts(child: Sequence[float], reference: Sequence[float]) -> tuple[int, int, float]:
    difference = np.asarray(child, float) - np.asarray(reference, float)
    if difference.size == 0:
        raise ValueError("no paired items to compare")
    return int((difference > 0).sum()), int((difference < 0).sum()), float(difference.mean())


def exact_mcnemar(child: Sequence[float], reference: Sequence[float]) -> PairedComparison:
    """Exact McNemar test of two paired binary outcome vectors (binomial test of discordant pairs)."""
    wins, losses, mean_difference = _counts(child, reference)
    n_discordant = wins + losses
    if n_discordant == 0:
        # No discordant pair: the data hold no evidence either way, and binomtest needs n >= 1.
        return _no_evidence("mcnemar-exact", len(child), mean_difference)
    p = {
        side: stats.binomtest(wins, n_discordant, 0.5, alternative=side).pvalue
        for side in ("greater", "less", "two-sided")
    }
    return _compared("mcnemar-exact", len(child), wins, losses, mean_difference, p)


def wilcoxon_signed_rank(child: Sequence[float], reference: Sequence[float]) -> PairedComparison:
    """Wilcoxon signed-rank test of two paired graded score vectors (zero differences dropped)."""
    wins, losses, mean_difference = _counts(child, reference)
    if wins + losses == 0:
        # Every difference is zero: scipy would divide by a zero variance; there is no evidence either way.
        return _no_evidence("wilcoxon", len(child), mean_difference)
    p = {
        side: stats.wilcoxon(child, reference, zero_method="wilcox", alternative=side).pvalue
        for side in ("greater", "less", "two-sided")
    }
    return _compared("wilcoxon", len(child), wins, losses, mean_difference, p)


PAIRED_TESTS: dict[ScoreKind, Callable[[Sequence[float], Sequence[float]], PairedComparison]] = {
    "binary": exact_mcnemar,
    "graded": wilcoxon_signed_rank,
}


def paired_test(child: Sequence[float], reference: Sequence[float], kind: ScoreKind) -> PairedComparison:
    """The paired test that fits the kind of score: exact McNemar (binary) or Wilcoxon (graded)."""
    return PAIRED_TESTS[kind](child, reference)


def score_kind(values: np.ndarray) -> ScoreKind:
    """'binary' when every finite value is 0 or 1, else 'graded'."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    return "binary" if np.isin(finite, (0.0, 1.0)).all() else "graded"


def _mean_difference(child: np.ndarray, reference: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(child - reference, axis=axis)


def bootstrap_difference_ci(
    child: Sequence[float], reference: Sequence[float], confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """The paired bootstrap percentile CI of mean(child - reference), resampling items with a fixed seed.

    Percentile rather than BCa: BCa is undefined (NaN) when the differences are all equal, which
    happens often with binary outcomes of near-identical models.
    """
    result = stats.bootstrap(
        (np.asarray(child, float), np.asarray(reference, float)),
        _mean_difference,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def checked_correction(name: str) -> Correction:
    """The user's multiple-comparison correction ('holm' or 'bh'), or a ConfigError."""
    if not _is_correction(name):
        raise ConfigError(f"unknown multiple-comparison correction {name!r}", hint=did_you_mean(name, set(CORRECTIONS)))
    return name


def _is_correction(name: str) -> TypeGuard[Correction]:
    return name in CORRECTIONS


def correction_method(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The adjustment of the user's correction ('holm' or 'bh'), or a ConfigError."""
    return CORRECTIONS[checked_correction(name)]


def adjust_p_values(p_values: Sequence[float], correction: str = "holm") -> np.ndarray:
    """p-values adjusted across one family of tests (Holm or Benjamini-Hochberg); NaN stays NaN."""
    p = np.asarray(p_values, float)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = correction_method(correction)(p[finite])
    return adjusted


def _holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the k-th smallest p times (m - k + 1), made monotone, capped at 1."""
    order = np.argsort(p_values)
    m = len(p_values)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def _benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    return stats.false_discovery_control(p_values, method="bh")


# Each multiple-comparison correction by its user-facing name (the tests check each against statsmodels').
CORRECTIONS: dict[Correction, Callable[[np.ndarray], np.ndarray]] = {"holm": _holm, "bh": _benjamini_hochberg}


def intersection_union_p(one_sided_p_values: Sequence[float]) -> float:
    """The intersection-union p-value of "better than every reference": the largest one-sided p.

    Rejecting "not better than some parent" needs every one-sided test to reject, so the IUT
    level-alpha test is max(p) < alpha, with no correction for the number of parents.
    """
    return float(np.max(one_sided_p_values))


def between_seed_sd(scores_per_seed: Sequence[float]) -> float:
    """The sample SD of a score across merge seeds (NaN for a single seed)."""
    scores = np.asarray(scores_per_seed, float)
    return float(np.std(scores, ddof=1)) if scores.size > 1 else float("nan")
