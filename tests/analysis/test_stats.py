"""Paired statistics against scipy and statsmodels called directly on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from mergescope.analysis.stats import (
    adjust_p_values,
    between_seed_sd,
    bootstrap_difference_ci,
    exact_mcnemar,
    intersection_union_p,
    paired_test,
    score_kind,
    wilcoxon_signed_rank,
)
from mergescope.errors import ConfigError


def binary_pair(wins: int, losses: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Child and reference outcomes with the given 2x2 counts, shuffled with a fixed seed."""
    child = np.r_[np.ones(wins), np.zeros(losses), np.ones(both), np.zeros(neither)]
    reference = np.r_[np.zeros(wins), np.ones(losses), np.ones(both), np.zeros(neither)]
    order = np.random.default_rng(0).permutation(child.size)
    return child[order], reference[order]


def test_exact_mcnemar_matches_binomtest_and_statsmodels():
    child, reference = binary_pair(wins=14, losses=5, both=60, neither=121)
    result = exact_mcnemar(child, reference)
    assert (result.wins, result.losses, result.n_items) == (14, 5, 200)
    assert result.p_greater == pytest.approx(stats.binomtest(14, 19, 0.5, alternative="greater").pvalue)
    assert result.p_less == pytest.approx(stats.binomtest(14, 19, 0.5, alternative="less").pvalue)
    # statsmodels' exact McNemar on the 2x2 table gives the same two-sided p.
    table = [[60, 14], [5, 121]]
    assert result.p_two_sided == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert result.mean_difference == pytest.approx((14 - 5) / 200)


def test_exact_mcnemar_without_discordant_pairs_is_no_evidence():
    child, reference = binary_pair(wins=0, losses=0, both=30, neither=10)
    result = exact_mcnemar(child, reference)
    assert (result.p_greater, result.p_less, result.p_two_sided, result.wins) == (1.0, 1.0, 1.0, 0)


def test_wilcoxon_matches_scipy():
    rng = np.random.default_rng(1)
    reference = rng.integers(1, 6, 80).astype(float)
    child = np.clip(reference + rng.choice([-1, 0, 1, 1], 80), 1, 5)
    result = wilcoxon_signed_rank(child, reference)
    for side, p in (("greater", result.p_greater), ("less", result.p_less), ("two-sided", result.p_two_sided)):
        assert p == pytest.approx(stats.wilcoxon(child, reference, alternative=side).pvalue)
    assert result.wins == int((child > reference).sum()) and result.losses == int((child < reference).sum())


def test_paired_test_dispatches_on_kind():
    child, reference = binary_pair(wins=8, losses=2, both=5, neither=5)
    assert paired_test(child, reference, "binary").test == "mcnemar-exact"
    assert paired_test(child, reference, "graded").test == "wilcoxon"
    assert score_kind(np.array([0.0, 1.0, np.nan])) == "binary"
    assert score_kind(np.array([0.0, 0.5, 1.0])) == "graded"


def test_bootstrap_ci_matches_scipy_with_the_same_seed():
    child, reference = binary_pair(wins=20, losses=8, both=50, neither=42)
    low, high = bootstrap_difference_ci(child, reference, n_resamples=2000, seed=7)
    expected = stats.bootstrap(
        (child, reference),
        lambda c, r, axis: np.mean(c - r, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(7),
    ).confidence_interval
    assert (low, high) == pytest.approx((expected.low, expected.high))
    assert low < (20 - 8) / 120 < high


def test_bootstrap_ci_of_identical_models_is_the_point_zero():
    child, reference = binary_pair(wins=0, losses=0, both=10, neither=10)
    assert bootstrap_difference_ci(child, reference, n_resamples=500) == (0.0, 0.0)


@pytest.mark.parametrize("correction, statsmodels_name", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjustment_matches_multipletests_and_keeps_nan(correction, statsmodels_name):
    p_values = np.array([0.001, 0.04, np.nan, 0.03, 0.5])
    adjusted = adjust_p_values(p_values, correction)
    finite = ~np.isnan(p_values)
    assert np.allclose(adjusted[finite], multipletests(p_values[finite], method=statsmodels_name)[1])
    assert np.isnan(adjusted[2])


@pytest.mark.parametrize("correction, statsmodels_name", [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjustment_matches_multipletests_with_ties_ones_and_single_tests(correction, statsmodels_name):
    rng = np.random.default_rng(7)
    families = [rng.random(n) for n in (1, 2, 5, 30)] + [np.array([0.01, 0.01, 0.5, 1.0, 1.0, 0.02])]
    for p_values in families:
        expected = multipletests(p_values, method=statsmodels_name)[1]
        assert np.allclose(adjust_p_values(p_values, correction), expected), p_values


def test_unknown_correction_suggests_the_known_ones():
    with pytest.raises(ConfigError, match="holmes") as error:
        adjust_p_values([0.1], "holmes")
    assert "holm" in error.value.hint


def test_intersection_union_p_is_the_largest_one_sided_p():
    assert intersection_union_p([0.01, 0.2, 0.03]) == 0.2


def test_between_seed_sd_is_the_sample_sd():
    assert between_seed_sd([0.5, 0.6, 0.7]) == pytest.approx(np.std([0.5, 0.6, 0.7], ddof=1))
    assert np.isnan(between_seed_sd([0.5]))
