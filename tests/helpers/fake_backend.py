"""A backend that serves no model: it answers each prompt with a canned text and logs what it was asked, for the
tests of answer generation (registered under a test's own name with `fake_backend.registered`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mergescope.serving import BACKENDS
from mergescope.serving.options import Plugin


@dataclass(frozen=True)
class FakeOptions:
    dtype: str = "float32"
    batched: bool = False  # True: generate takes every prompt at once, as vLLM's engine does


@dataclass(frozen=True)
class BatchedOptions(FakeOptions):
    batched: bool = True


class FakeBackend:
    """Answers "answer to PROMPT"; `log` (shared by every instance) records ("load" | "generate" | "close", detail)."""

    name = "fake"
    log: list[tuple[str, object]] = []

    def __init__(self, options: FakeOptions = FakeOptions()):
        self.batched = options.batched
        self.tokenizer = None

    def load(self, model_dir: Path) -> None:
        self.log.append(("load", str(model_dir)))

    def generate(self, prompts: list[str], max_tokens: int, temperature: float = 0.0) -> list[str]:
        self.log.append(("generate", len(prompts)))
        return [f"answer to {prompt}" for prompt in prompts]

    def close(self) -> None:
        self.log.append(("close", None))


def registered(monkeypatch, batched: bool) -> list[tuple[str, object]]:
    """Register the fake backend as "fake" (batched or not) for one test; returns its (emptied) log."""
    options = BatchedOptions if batched else FakeOptions  # the registry builds the record from {"dtype": ...} alone
    monkeypatch.setitem(BACKENDS, "fake", Plugin("helpers.fake_backend:FakeBackend", options))
    FakeBackend.log.clear()
    return FakeBackend.log
