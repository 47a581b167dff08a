"""Reading judge replies: JSON, fenced JSON, labelled prose, bare "N/M" at the end; missing, never zero."""

from __future__ import annotations

import math
import re

import pytest

from mergescope.scoring.judge_parse import ReplyToken, expected_score, last_json_object, parse_grades, parse_verdict
from mergescope.scoring.rubric import find_rubric, grading_messages, pairwise_messages

TWO = {"clarity": (1, 5), "reasoning_depth": (1, 5)}
ONE = {"clarity": (1, 5)}


def values(parsed):
    return {name: score.value for name, score in parsed.items()}


def statuses(parsed):
    return {name: score.status for name, score in parsed.items()}


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            '{"reasoning": "ok", "scores": {"clarity": 4, "reasoning_depth": 2}}',
            {"clarity": 4.0, "reasoning_depth": 2.0},
        ),
        ('{"clarity": "3/5", "Reasoning Depth": 5}', {"clarity": 3.0, "reasoning_depth": 5.0}),
        (
            'Sure!\n```json\n{"scores": {"clarity": 5, "reasoning_depth": 1}}\n```\nHope that helps.',
            {"clarity": 5.0, "reasoning_depth": 1.0},
        ),
        (
            '{"scores": {"clarity": 2, "reasoning_depth": 3}} Let me know if {you} need more.',
            {"clarity": 2.0, "reasoning_depth": 3.0},
        ),
        (
            "Thoughts first.\n**Clarity**: 4/5\n- reasoning depth: 3\nA decent answer overall.",
            {"clarity": 4.0, "reasoning_depth": 3.0},
        ),
    ],
)
def test_scores_are_read_from_json_fences_and_labelled_prose(reply, expected):
    assert values(parse_grades(reply, TWO)) == expected


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("The answer is clear and well argued.\nScore: 4/5", 4.0),
        ("Clear enough. Score: 3. Some wording could be tighter.", 3.0),
        ("Well organised.\n\n4/5", 4.0),
        ("Clear. Final: 2 / 5.", 2.0),
    ],
)
def test_a_single_criterion_takes_score_labels_and_a_final_fraction(reply, expected):
    assert values(parse_grades(reply, ONE)) == {"clarity": expected}


def test_the_last_labelled_score_wins_over_an_earlier_one():
    reply = "At first I thought clarity: 2/5, but on reflection\nclarity: 4/5"
    assert values(parse_grades(reply, ONE)) == {"clarity": 4.0}


def test_a_fraction_in_the_middle_of_prose_is_not_a_score():
    # "3/4 of the steps" is not a verdict, and it is not at the end of the reply
    parsed = parse_grades("The answer gets 3/4 of the steps right but stops early, so hard to say.", ONE)
    assert statuses(parsed) == {"clarity": "unparseable"} and values(parsed) == {"clarity": None}


@pytest.mark.parametrize(
    "reply, status",
    [
        ('{"scores": {"clarity": 7, "reasoning_depth": 0}}', "out_of_range"),
        ('{"scores": {"clarity": "4/10", "reasoning_depth": "4/10"}}', "out_of_range"),
        ('{"scores": {"clarity": "great", "reasoning_depth": null}}', "unparseable"),
        ('{"scores": {"clarity": true, "reasoning_depth": true}}', "unparseable"),
        ("I refuse to grade this.", "unparseable"),
        ("", "empty"),
        ("   \n", "empty"),
        (None, "empty"),
    ],
)
def test_unreadable_or_out_of_range_scores_are_missing_never_zero(reply, status):
    parsed = parse_grades(reply, TWO)
    assert values(parsed) == {"clarity": None, "reasoning_depth": None}
    assert set(statuses(parsed).values()) == {status}


def test_a_partial_json_reply_keeps_what_it_graded():
    parsed = parse_grades('{"scores": {"clarity": 5}}', TWO)
    assert values(parsed) == {"clarity": 5.0, "reasoning_depth": None}
    assert statuses(parsed) == {"clarity": "ok", "reasoning_depth": "unparseable"}


def test_an_echoed_prompt_never_parses_as_a_verdict():
    """A judge that repeats its whole prompt must not get the scores the rubric text mentions."""
    rubric = find_rubric("chat_quality")
    question = rubric.questions[0]
    grading_prompt = "\n".join(m["content"] for m in grading_messages(rubric, question, "The answer is 5/5."))
    parsed = parse_grades(grading_prompt, rubric.scales)
    assert all(score.value is None for score in parsed.values()), parsed
    pairwise_prompt = "\n".join(m["content"] for m in pairwise_messages(rubric, question, "x", "y"))
    assert parse_verdict(pairwise_prompt).verdict is None


def test_the_last_json_object_is_the_outermost_one():
    assert last_json_object('{"a": 1} then {"b": {"c": 2}} trailing') == {"b": {"c": 2}}
    assert last_json_object("no json {here") is None


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ('{"reasoning": "A is right", "winner": "A"}', "A"),
        ('```json\n{"winner": "b"}\n```', "B"),
        ('{"winner": "tie"}', "tie"),
        ('{"winner": "Answer A"}', "A"),
        ("Both are weak, but the first is correct. [[A]]", "A"),
        ("Equally good. [[C]]", "tie"),
        ("I first leaned to A.\nWinner: B", "B"),
    ],
)
def test_pairwise_verdicts(reply, verdict):
    assert parse_verdict(reply).verdict == verdict


@pytest.mark.parametrize(
    "reply, status", [("", "empty"), ("They are different.", "unparseable"), ('{"winner": "neither"}', "unparseable")]
)
def test_unreadable_verdicts_are_missing(reply, status):
    parsed = parse_verdict(reply)
    assert (parsed.verdict, parsed.status) == (None, status)


# -- probability-weighted scores ---------------------------------------------------------------------------------
def tokens_of(reply: str, weights: dict[str, dict[str, float]]) -> tuple[ReplyToken, ...]:
    """`reply` as tokens (words, single digits, other characters); `weights` gives a written digit its alternatives."""
    pieces = re.findall(r"\d|\w+|\s+|.", reply)
    return tuple(
        ReplyToken(p, tuple((alt, math.log(w)) for alt, w in weights.get(p, {p: 1.0}).items()), len(p.encode()))
        for p in pieces
    )


@pytest.mark.parametrize(
    "reply",
    [
        '{"reasoning": "the 4 steps are right", "scores": {"clarity": 4, "reasoning_depth": 2}}',
        "Clarity: 4/5, though step 2 is thin.\nReasoning depth: 2",
        'Sure.\n```json\n{"clarity": 4, "reasoning_depth": "2/5"}\n```',
    ],
)
def test_the_weighted_score_is_read_at_the_token_that_wrote_the_score(reply):
    weights = {"4": {"4": 0.6, "5": 0.3, "x": 0.1}, "2": {"2": 0.5, "3": 0.5}}
    parsed = parse_grades(reply, TWO)
    tokens = tokens_of(reply, weights)
    # a "4" or "2" elsewhere in the reply (the reasoning) is not the score's token
    assert expected_score(reply, parsed["clarity"], tokens, (1, 5)) == pytest.approx((4 * 0.6 + 5 * 0.3) / 0.9)
    assert expected_score(reply, parsed["reasoning_depth"], tokens, (1, 5)) == pytest.approx(2.5)


def test_no_weighted_score_without_tokens_a_whole_number_token_or_a_match():
    reply = '{"clarity": 10}'
    ten = parse_grades(reply, {"clarity": (1, 10)})["clarity"]
    split = tokens_of(reply, {"1": {"1": 0.9, "9": 0.1}})  # "10" written as "1" + "0": no single score token
    assert ten.value == 10.0 and expected_score(reply, ten, split, (1, 10)) is None
    four = parse_grades('{"clarity": 4}', ONE)["clarity"]
    assert expected_score('{"clarity": 4}', four, (), (1, 5)) is None
    assert expected_score('{"clarity": 4}', four, tokens_of('{"clarity": 5}', {}), (1, 5)) is None  # other text
    off_scale = tokens_of('{"clarity": 4}', {"4": {"4": 0.5, "7": 0.5}})
    assert expected_score('{"clarity": 4}', four, off_scale, (1, 5)) == 4.0  # 7 is not on the scale


def test_tokens_that_split_a_character_still_align_by_bytes():
    reply = 'Naïve but right — {"clarity": 5}'
    pieces = []
    for piece in re.findall(r"\d|\w+|\s+|.", reply):
        if piece.isascii():
            pieces.append(
                ReplyToken(
                    piece, ((piece, 0.0),) if piece != "5" else (("5", math.log(0.8)), ("4", math.log(0.2))), len(piece)
                )
            )
        else:
            pieces += [ReplyToken("\ufffd", (), 1) for _ in piece.encode()]
    score = parse_grades(reply, ONE)["clarity"]
    assert expected_score(reply, score, tuple(pieces), (1, 5)) == pytest.approx(4.8)


# A judge out of tokens: SmolLM2-135M fenced its JSON and was cut, in 35 of its first 50 free-text replies.
@pytest.mark.parametrize(
    "reply, expected",
    [
        ('```json\n{"scores": {"clarity": 4, "reasoning_depth": 2}}', {"clarity": 4.0, "reasoning_depth": 2.0}),
        (
            '```json\n{"reasoning": "fine", "scores": {"clarity": 4, "reasoning_depth": 2}}\n```\nThis JSON object',
            {"clarity": 4.0, "reasoning_depth": 2.0},
        ),
        ('```json\n{"reasoning": "The answer is right, but', {"clarity": None, "reasoning_depth": None}),
        ('```json\n{"scores": {"clarity": 4, "reasoning_depth": ', {"clarity": None, "reasoning_depth": None}),
    ],
    ids=["fence-never-closed", "fence-then-chatter", "cut-in-reasoning", "cut-in-scores"],
)
def test_a_fenced_reply_cut_short_is_read_when_its_object_is_whole_and_missing_otherwise(reply, expected):
    parsed = parse_grades(reply, {"clarity": (1, 5), "reasoning_depth": (1, 5)})
    assert {name: score.value for name, score in parsed.items()} == expected
    assert {score.status for score in parsed.values()} == ({"ok"} if None not in expected.values() else {"unparseable"})
