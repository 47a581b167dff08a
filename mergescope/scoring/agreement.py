"""How far judges can be trusted: parse failures, self-consistency, position bias, inter-judge agreement, CIs.

Every function reads the store's `judgments` / `comparisons` tables as DataFrames (see `judge_store`) and
returns a DataFrame; `judge_statistics` flattens them into the rows of the `judge_stats` table.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import cohen_kappa_score

UNIT = ["subject_id", "rubric", "question_id", "criterion"]


def parse_failure_rates(judgments: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per judge: how many scores (and pairwise verdicts) were asked for, how many are missing, and the rate."""
    parts = [judgments.assign(missing=judgments.score.isna())[["judge", "missing"]]]
    if comparisons is not None and len(comparisons):
        verdicts = pd.concat([comparisons.verdict_first, comparisons.verdict_swapped])
        parts.append(pd.DataFrame({"judge": pd.concat([comparisons.judge] * 2), "missing": verdicts.isna()}))
    rows = pd.concat(parts).groupby("judge").missing.agg(n="size", n_missing="sum").reset_index()
    return rows.assign(rate=rows.n_missing / rows.n)


def with_reply_formats(rates: pd.DataFrame, status: pd.DataFrame | None) -> pd.DataFrame:
    """`rates` (per judge) with the reply formats each judge was asked in (the `judge_status` table's), e.g.
    "structured" or "free_text, structured"; "not recorded" for runs judged before formats were kept."""
    if status is None or "reply_format" not in status.columns:
        return rates.assign(reply_format="not recorded")
    recorded = status.dropna(subset=["reply_format"])
    formats = recorded.groupby("judge").reply_format.agg(lambda named: ", ".join(sorted(set(named))))
    return rates.assign(reply_format=rates.judge.map(formats).fillna("not recorded"))


def self_consistency(judgments: pd.DataFrame) -> pd.DataFrame:
    """Per judge and criterion, over answers scored in >= 2 readable samples: mean SD and exact-agreement rate."""
    scored = judgments.dropna(subset=["score"])
    groups = scored.groupby(["judge", *UNIT]).score.agg(
        sd=lambda s: s.std(ddof=1), n="size", agree=lambda s: s.nunique() == 1
    )
    groups = groups[groups.n >= 2].reset_index()
    return (
        groups.groupby(["judge", "rubric", "criterion"])
        .agg(n_answers=("sd", "size"), mean_sd=("sd", "mean"), exact_agreement=("agree", "mean"))
        .reset_index()
    )


def position_bias(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per judge and rubric: the share of pairs whose verdict flips with the order, and which position won then."""
    both = comparisons.dropna(subset=["verdict_first", "verdict_swapped"])
    flipped = both[both.verdict_first != both.verdict_swapped.map({"A": "B", "B": "A", "tie": "tie"})]
    table = both.groupby(["judge", "rubric"]).size().rename("n").to_frame()
    table["inconsistent"] = flipped.groupby(["judge", "rubric"]).size()
    table["first_position_wins"] = (
        flipped[(flipped.verdict_first == "A") & (flipped.verdict_swapped == "A")].groupby(["judge", "rubric"]).size()
    )
    table["second_position_wins"] = (
        flipped[(flipped.verdict_first == "B") & (flipped.verdict_swapped == "B")].groupby(["judge", "rubric"]).size()
    )
    table = table.fillna(0).astype(int).reset_index()
    return table.assign(position_bias_rate=table.inconsistent / table.n)


def krippendorff_alpha(ratings: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's alpha of a units x raters matrix (NaN = not rated), "interval" or "ordinal" distances."""
    values = np.unique(ratings[~np.isnan(ratings)])
    index = {value: i for i, value in enumerate(values)}
    coincidence = np.zeros((len(values), len(values)))
    for unit in ratings:
        present = [index[v] for v in unit[~np.isnan(unit)]]
        if len(present) < 2:
            continue  # a unit rated once has no pair to agree or disagree on
        for i, a in enumerate(present):
            for j, b in enumerate(present):
                if i != j:
                    coincidence[a, b] += 1 / (len(present) - 1)
    totals = coincidence.sum(axis=1)
    n = totals.sum()
    if level == "interval":
        delta = np.subtract.outer(values, values) ** 2
    elif level == "ordinal":
        cumulative = np.cumsum(totals)
        positions = np.arange(len(values))
        low, high = np.minimum.outer(positions, positions), np.maximum.outer(positions, positions)
        delta = (cumulative[high] - cumulative[low] + totals[low] - np.add.outer(totals, totals) / 2) ** 2
    else:
        raise ValueError(f"unknown level {level!r}: use 'interval' or 'ordinal'")
    expected = (np.outer(totals, totals) * delta).sum() / (n * (n - 1)) if n > 1 else 0.0
    return float("nan") if expected == 0 else 1 - (coincidence * delta).sum() / n / expected


def _rated_units(judgments: pd.DataFrame) -> pd.DataFrame:
    """Units (subject, rubric, question, criterion) x judges: each judge's mean score over its samples."""
    return judgments.dropna(subset=["score"]).pivot_table(index=UNIT, columns="judge", values="score", aggfunc="mean")


def inter_judge_agreement(judgments: pd.DataFrame) -> pd.DataFrame:
    """Per rubric and criterion: quadratic-weighted kappa and Spearman per judge pair, and Krippendorff's alpha.

    Kappa needs categories, so each judge's mean over samples is rounded to the nearest score.
    """
    rows = []
    for (rubric, criterion), part in _rated_units(judgments).groupby(level=["rubric", "criterion"]):
        judges = list(part.columns[part.notna().any()])
        if len(judges) < 2:
            continue
        for level in ("interval", "ordinal"):
            rows.append(
                {
                    "rubric": rubric,
                    "criterion": criterion,
                    "judges": ",".join(judges),
                    "statistic": f"krippendorff_alpha_{level}",
                    "value": krippendorff_alpha(part[judges].to_numpy(), level),
                    "n": int((part[judges].notna().sum(axis=1) >= 2).sum()),
                }
            )
        for a, b in combinations(judges, 2):
            pair = part[[a, b]].dropna()
            rows += _pair_rows(rubric, criterion, a, b, pair)
    return pd.DataFrame(rows, columns=["rubric", "criterion", "judges", "statistic", "value", "n"])


def _pair_rows(rubric: str, criterion: str, a: str, b: str, pair: pd.DataFrame) -> list[dict]:
    if len(pair) < 2:
        return []
    first, second = pair[a].round().astype(int), pair[b].round().astype(int)
    labels = np.arange(min(first.min(), second.min()), max(first.max(), second.max()) + 1)
    kappa = cohen_kappa_score(first, second, weights="quadratic", labels=labels) if len(labels) > 1 else float("nan")
    # A judge giving one score to everything has no ranking: Spearman is undefined (scipy would warn).
    varied = pair[a].nunique() > 1 and pair[b].nunique() > 1
    spearman = stats.spearmanr(pair[a], pair[b]).statistic if varied else float("nan")
    base = {"rubric": rubric, "criterion": criterion, "judges": f"{a},{b}", "n": len(pair)}
    return [
        {**base, "statistic": "weighted_kappa_quadratic", "value": float(kappa)},
        {**base, "statistic": "spearman", "value": float(spearman)},
    ]


def criterion_intervals(judgments: pd.DataFrame, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per subject, rubric, judge and criterion: mean score over questions with a percentile bootstrap CI,
    and `self_preference` when the judge is the judged model or one of its parents."""
    keys = ["subject_id", "rubric", "judge", "criterion"]
    scored = judgments.dropna(subset=["score"])
    per_question = scored.groupby([*keys, "question_id"]).score.mean()
    flagged = scored.groupby(keys).self_preference.max() if "self_preference" in scored else None
    rows = []
    for key, values in per_question.groupby(level=[0, 1, 2, 3]):
        low, high = _bootstrap_mean(values.to_numpy(), confidence, seed)
        rows.append(
            dict(
                zip(keys, key, strict=True),
                mean=values.mean(),
                ci_low=low,
                ci_high=high,
                n=len(values),
                self_preference=bool(flagged[key]) if flagged is not None else False,
            )
        )
    return pd.DataFrame(rows, columns=[*keys, "mean", "ci_low", "ci_high", "n", "self_preference"])


def _bootstrap_mean(values: np.ndarray, confidence: float, seed: int) -> tuple[float, float]:
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])  # no spread to resample; scipy would warn and return NaN
    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def judge_statistics(judgments: pd.DataFrame, comparisons: pd.DataFrame) -> list[dict]:
    """All the agreement statistics of a run as rows of the `judge_stats` table."""
    return [
        *_failure_rows(judgments, comparisons),
        *_consistency_rows(judgments),
        *_position_rows(comparisons),
        *_agreement_rows(judgments),
        *_interval_rows(judgments),
    ]


def _failure_rows(judgments: pd.DataFrame, comparisons: pd.DataFrame) -> list[dict]:
    return [
        {"judge": r.judge, "rubric": "*", "statistic": "parse_failure_rate", "value": r.rate, "n": r.n}
        for r in parse_failure_rates(judgments, comparisons).itertuples()
    ]


def _consistency_rows(judgments: pd.DataFrame) -> list[dict]:
    return [
        {
            "judge": r.judge,
            "rubric": r.rubric,
            "criterion": r.criterion,
            "statistic": name,
            "value": value,
            "n": r.n_answers,
        }
        for r in self_consistency(judgments).itertuples()
        for name, value in (("self_consistency_mean_sd", r.mean_sd), ("self_consistency_exact", r.exact_agreement))
    ]


def _position_rows(comparisons: pd.DataFrame) -> list[dict]:
    if comparisons.empty:
        return []
    return [
        {
            "judge": r.judge,
            "rubric": r.rubric,
            "statistic": "position_bias_rate",
            "value": r.position_bias_rate,
            "n": r.n,
            "detail": {
                "first_position_wins": int(r.first_position_wins),
                "second_position_wins": int(r.second_position_wins),
            },
        }
        for r in position_bias(comparisons).itertuples()
    ]


def _agreement_rows(judgments: pd.DataFrame) -> list[dict]:
    return [
        {
            "judge": r.judges,
            "rubric": r.rubric,
            "criterion": r.criterion,
            "statistic": r.statistic,
            "value": r.value,
            "n": r.n,
        }
        for r in inter_judge_agreement(judgments).itertuples()
    ]


def _interval_rows(judgments: pd.DataFrame) -> list[dict]:
    return [
        {
            "judge": r.judge,
            "rubric": r.rubric,
            "criterion": r.criterion,
            "statistic": "criterion_mean",
            "value": r.mean,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "n": r.n,
            "detail": {"subject_id": r.subject_id, "self_preference": bool(r.self_preference)},
        }
        for r in criterion_intervals(judgments).itertuples()
    ]
