"""Fault injection for the crash tests: `kill_point(name)` signals this process at a chosen point.

A test seam, inert unless the environment asks for it. `MERGESCOPE_KILL_AT=NAME:N` sends SIGKILL to the
process the N-th time it passes `kill_point(NAME)`; `NAME:N:INT` sends SIGINT instead (a real Ctrl-C, so the
interrupt path runs too). The variable is read once at import; without it a kill point is one comparison.
tests/recipes/test_crash_resume.py kills sweeps at every name in `KILL_POINTS` and checks that resuming them
gives the results of an uninterrupted run.
"""

from __future__ import annotations

import os
import signal

ENV_VAR = "MERGESCOPE_KILL_AT"
# With this set to a file path, only the first process to reach the target fires (and creates the file):
# a restarted worker inheriting the same environment (a Ray actor) then runs on.
ONCE_VAR = "MERGESCOPE_KILL_ONCE"

# Every kill point placed in the package, by stage; the crash test kills at each one.
KILL_POINTS = (
    "merge.partial_created",  # merge.py: the temporary merge directory exists and is empty
    "merge.weights_written",  # merge.py: safetensors written into it, config.json not yet
    "merge.before_rename",  # merge.py: the temporary directory is complete, not yet renamed
    "merge.renamed",  # merge.py: the finished merge is in place, not yet evaluated
    "eval.before",  # executors/worker.py: the model is loaded, evaluation not started
    "eval.after",  # executors/worker.py: evaluated, nothing stored yet
    "store.before_commit",  # store.py: every row of the subject inserted, transaction not committed
    "store.committed",  # sweep.py: the subject is stored and marked done
    "judge.answers_written",  # judge_run.py: the subject's answers are stored, nothing graded yet
    "judge.graded",  # judge_run.py: judgments stored, judge scores not yet
    "judge.subject_done",  # sweep.py: the subject is fully judged
    "judge.closing",  # judge_run.py: every subject judged, statistics not yet written
    "report.partial_written",  # report/html.py: the new report is in a temporary file, not yet renamed
)


def _target(value: str | None) -> tuple[str, int, signal.Signals] | None:
    if not value:
        return None
    name, _, rest = value.partition(":")
    count, _, which = rest.partition(":")
    return name, int(count or 1), signal.Signals[f"SIG{which or 'KILL'}"]


_TARGET = _target(os.environ.get(ENV_VAR))
_hits = 0


def kill_point(name: str) -> None:
    """Signal this process if `name` is the kill point (and hit count) that MERGESCOPE_KILL_AT names."""
    global _hits
    if _TARGET is None or name != _TARGET[0]:
        return
    _hits += 1
    if _hits == _TARGET[1] and _first_to_fire():
        os.kill(os.getpid(), _TARGET[2])


def _first_to_fire() -> bool:
    marker = os.environ.get(ONCE_VAR)
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True
