"""Agreement statistics, checked against published values and against the formulas computed with numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mergescope.runs.records import Comparison
from mergescope.scoring.agreement import (
    criterion_intervals,
    inter_judge_agreement,
    judge_statistics,
    krippendorff_alpha,
    parse_failure_rates,
    position_bias,
    self_consistency,
    with_reply_formats,
)

NAN = np.nan
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the worked example: 4 observers x 12 units.
RELIABILITY_DATA = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
        [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
    ]
).T


def judgment_rows(scores: dict[tuple[str, str, int], float | None], criterion: str = "clarity") -> pd.DataFrame:
    """A judgments table from {(judge, question_id, sample): score}."""
    return pd.DataFrame(
        [
            {
                "subject_id": "s1",
                "rubric": "r",
                "question_id": q,
                "criterion": criterion,
                "judge": j,
                "sample": k,
                "score": NAN if v is None else v,
            }
            for (j, q, k), v in scores.items()
        ]
    )


def test_krippendorff_alpha_matches_the_published_example():
    assert krippendorff_alpha(RELIABILITY_DATA, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(RELIABILITY_DATA, "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_alpha_is_one_for_perfect_agreement_and_rejects_unknown_levels():
    same = np.array([[1, 1], [3, 3], [5, 5], [2, NAN]], dtype=float)
    assert krippendorff_alpha(same) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="nominal"):
        krippendorff_alpha(same, "nominal")


def test_inter_judge_agreement_matches_kappa_and_spearman_formulas():
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=40)
    noisy = np.clip(truth + rng.integers(-1, 2, size=40), 1, 5)
    rows = judgment_rows(
        {
            **{("judge-a", f"q{i}", 0): float(v) for i, v in enumerate(truth)},
            **{("judge-b", f"q{i}", 0): float(v) for i, v in enumerate(noisy)},
        }
    )
    table = inter_judge_agreement(rows).set_index("statistic").value

    observed = np.zeros((5, 5))
    np.add.at(observed, (truth - 1, noisy - 1), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    weights = np.subtract.outer(np.arange(5), np.arange(5)) ** 2
    kappa = 1 - (weights * observed).sum() / (weights * expected).sum()
    assert table["weighted_kappa_quadratic"] == pytest.approx(kappa)
    assert table["spearman"] == pytest.approx(stats.spearmanr(truth, noisy).statistic)
    assert table["krippendorff_alpha_interval"] == pytest.approx(
        krippendorff_alpha(np.column_stack([truth, noisy]).astype(float), "interval")
    )


def test_one_judge_has_no_inter_judge_rows():
    assert inter_judge_agreement(judgment_rows({("a", "q1", 0): 3.0, ("a", "q2", 0): 4.0})).empty


def test_self_consistency_is_mean_sd_and_exact_agreement_over_samples():
    rows = judgment_rows(
        {
            ("a", "q1", 0): 4.0,
            ("a", "q1", 1): 4.0,
            ("a", "q1", 2): 4.0,
            ("a", "q2", 0): 3.0,
            ("a", "q2", 1): 5.0,
            ("a", "q3", 0): 2.0,
            ("a", "q3", 1): None,
        }
    )  # one readable sample: left out
    row = self_consistency(rows).iloc[0]
    assert row.n_answers == 2
    assert row.mean_sd == pytest.approx(np.mean([0.0, np.std([3, 5], ddof=1)]))
    assert row.exact_agreement == pytest.approx(0.5)


def comparison(first, swapped, question="q1") -> Comparison:
    return Comparison(
        subject_id="cand",
        opponent_id="parent-a",
        rubric="r",
        question_id=question,
        judge="judge",
        sample=0,
        verdict_first=first,
        verdict_swapped=swapped,
        raw_first="",
        raw_swapped="",
    )


@pytest.mark.parametrize(
    "first, swapped, outcome, consistent",
    [
        ("A", "B", "win", True),
        ("B", "A", "loss", True),
        ("tie", "tie", "tie", True),
        ("A", "A", "tie", False),
        ("B", "B", "tie", False),
        ("A", "tie", "tie", False),
        (None, "B", None, None),
    ],
)
def test_pairwise_outcome_needs_both_orders_to_agree(first, swapped, outcome, consistent):
    judged = comparison(first, swapped)
    assert (judged.outcome, judged.consistent) == (outcome, consistent)


def test_position_bias_counts_flips_and_which_position_won():
    pairs = [
        comparison("A", "B", "q1"),
        comparison("tie", "tie", "q2"),
        comparison("A", "A", "q3"),
        comparison("B", "B", "q4"),
        comparison("A", "A", "q5"),
        comparison(None, "A", "q6"),
    ]
    table = pd.DataFrame(
        [
            {
                "judge": c.judge,
                "rubric": c.rubric,
                "verdict_first": c.verdict_first,
                "verdict_swapped": c.verdict_swapped,
            }
            for c in pairs
        ]
    )
    row = position_bias(table).iloc[0]
    assert (row.n, row.inconsistent, row.first_position_wins, row.second_position_wins) == (5, 3, 2, 1)
    assert row.position_bias_rate == pytest.approx(3 / 5)


def test_parse_failure_rate_counts_missing_scores_and_verdicts():
    rows = judgment_rows({("a", "q1", 0): 4.0, ("a", "q2", 0): None, ("b", "q1", 0): 2.0})
    verdicts = pd.DataFrame({"judge": ["a"], "verdict_first": [None], "verdict_swapped": ["A"]})
    rates = parse_failure_rates(rows, verdicts).set_index("judge")
    assert rates.loc["a", "n"] == 4 and rates.loc["a", "n_missing"] == 2 and rates.loc["a", "rate"] == 0.5
    assert rates.loc["b", "rate"] == 0.0


def test_parse_failures_name_the_reply_formats_each_judge_was_asked_in():
    rates = pd.DataFrame({"judge": ["a", "b", "c"], "n": [4, 2, 2], "n_missing": [1, 0, 0], "rate": [0.25, 0.0, 0.0]})
    status = pd.DataFrame(
        {"judge": ["a", "a", "a", "b"], "reply_format": ["structured", "free_text", "structured", None]}
    )
    named = with_reply_formats(rates, status).set_index("judge").reply_format
    assert named.to_dict() == {"a": "free_text, structured", "b": "not recorded", "c": "not recorded"}
    assert set(with_reply_formats(rates, None).reply_format) == {"not recorded"}


def test_criterion_interval_brackets_the_mean_of_question_means():
    rng = np.random.default_rng(3)
    scores = {("a", f"q{i}", k): float(rng.integers(1, 6)) for i in range(12) for k in range(2)}
    row = criterion_intervals(judgment_rows(scores)).iloc[0]
    question_means = [np.mean([scores[("a", f"q{i}", k)] for k in range(2)]) for i in range(12)]
    assert row["mean"] == pytest.approx(np.mean(question_means)) and row["n"] == 12
    assert row.ci_low < row["mean"] < row.ci_high
    assert 1 <= row.ci_low and row.ci_high <= 5


def test_criterion_interval_flags_a_self_preferring_judge():
    rows = judgment_rows({("a", "q1", 0): 4.0, ("a", "q2", 0): 5.0, ("b", "q1", 0): 3.0, ("b", "q2", 0): 3.0})
    rows["self_preference"] = (rows.judge == "a").astype(int)
    flags = criterion_intervals(rows).set_index("judge").self_preference
    assert flags.to_dict() == {"a": True, "b": False}


def test_judge_statistics_rows_cover_every_statistic():
    rows = judgment_rows(
        {
            ("a", "q1", 0): 4.0,
            ("a", "q1", 1): 5.0,
            ("b", "q1", 0): 4.0,
            ("a", "q2", 0): 2.0,
            ("a", "q2", 1): 2.0,
            ("b", "q2", 0): 1.0,
        }
    )
    table = pd.DataFrame([{"judge": "a", "rubric": "r", "verdict_first": "A", "verdict_swapped": "A"}])
    names = {row["statistic"] for row in judge_statistics(rows, table)}
    assert names == {
        "parse_failure_rate",
        "self_consistency_mean_sd",
        "self_consistency_exact",
        "position_bias_rate",
        "krippendorff_alpha_interval",
        "krippendorff_alpha_ordinal",
        "weighted_kappa_quadratic",
        "spearman",
        "criterion_mean",
    }
