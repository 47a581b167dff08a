"""Scoring stages: lm-eval benchmarks (lmeval.py) and LLM judges (rubric, judge, judge_parse, agreement)."""
