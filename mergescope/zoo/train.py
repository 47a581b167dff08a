"""A plain training loop (nanoGPT style): packed-text batches, answer-only QA batches, AdamW, cosine decay."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from transformers import LlamaForCausalLM

from mergescope.zoo.manifest import TrainedStage

IGNORE_INDEX = -100
Batch = tuple[torch.Tensor, torch.Tensor]
# Which weights a stage moves: every one; only the domain words' embedding and output rows (the zoo's domain CPT);
# all but the tied embedding and output matrix (the real model's parents).
Trains = Literal["all", "domain_words", "no_embeddings"]


@dataclass(frozen=True)
class Stage:
    """Hyper-parameters of one training stage; recorded verbatim in the zoo manifest."""

    name: str
    mixture: tuple[str, ...]  # the data sources of each batch, drawn in these proportions
    steps: int
    lr: float
    batch_size: int
    warmup_steps: int = 20
    weight_decay: float = 0.1
    trains: Trains = "all"

    def as_recipe(self) -> dict[str, object]:
        """Return the stage as a JSON-ready dict."""
        return asdict(self)


def lr_at(step: int, stage: Stage) -> float:
    """Return the learning rate at `step`: linear warm-up, then cosine decay to a tenth of the peak."""
    if step < stage.warmup_steps:
        return stage.lr * (step + 1) / stage.warmup_steps
    progress = (step - stage.warmup_steps) / max(1, stage.steps - stage.warmup_steps)
    return stage.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def packed_batches(
    token_ids: list[int] | torch.Tensor, block_size: int, batch_size: int, rng: random.Random
) -> Callable[[], Batch]:
    """Return a sampler of random windows from one token stream (documents joined by EOS), loss on all tokens."""
    stream = torch.as_tensor(token_ids, dtype=torch.long)
    last_start = len(stream) - block_size

    def sample() -> Batch:
        starts = [rng.randrange(last_start) for _ in range(batch_size)]
        windows = torch.stack([stream[s : s + block_size] for s in starts])
        return windows, windows

    return sample


def qa_batches(
    examples: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int, rng: random.Random
) -> Callable[[], Batch]:
    """Return a sampler of (prompt, answer) id pairs, right-padded, with the loss on answer ids only.

    No attention mask is needed: padding sits after every real token and the attention is causal.
    """

    def sample() -> Batch:
        chosen = [examples[rng.randrange(len(examples))] for _ in range(batch_size)]
        length = max(len(p) + len(a) for p, a in chosen)
        input_ids = torch.full((batch_size, length), pad_id, dtype=torch.long)
        labels = torch.full((batch_size, length), IGNORE_INDEX, dtype=torch.long)
        for row, (prompt, answer) in enumerate(chosen):
            end = len(prompt) + len(answer)
            input_ids[row, :end] = torch.tensor(prompt + answer)
            labels[row, len(prompt) : end] = torch.tensor(answer)
        return input_ids, labels

    return sample


def mixed_batches(samplers: list[Callable[[], Batch]], rng: random.Random) -> Callable[[], Batch]:
    """Return a sampler that draws each batch from one of `samplers` in turn, chosen at random."""
    return lambda: samplers[rng.randrange(len(samplers))]()


def train(
    model: LlamaForCausalLM,
    next_batch: Callable[[], Batch],
    stage: Stage,
    log: Callable[[str], None] | None = None,
    dev: Callable[[LlamaForCausalLM], float] | None = None,
    dev_every: int = 100,
) -> TrainedStage:
    """Train `model` in place for `stage.steps` AdamW steps.

    With `dev`, the model is scored every `dev_every` steps and at the end, and the best-scoring checkpoint
    is the one kept (the later one on ties): a recipe that peaks before its last step, or whose last steps
    land differently on another CPU's float kernels, keeps what it had learnt.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    no_decay = [p for p in trainable if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": stage.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=stage.lr,
        betas=(0.9, 0.95),
    )
    model.train()
    tail = max(1, stage.steps // 10)
    losses: list[float] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    start = time.perf_counter()
    for step in range(stage.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, stage)
        input_ids, labels = next_batch()
        loss = model(input_ids=input_ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(loss.item())
        done = step + 1
        score = dev(model) if dev is not None and (done % dev_every == 0 or done == stage.steps) else None
        if score is not None and (best is None or score >= best[0]):
            best = (score, done, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if log is not None and (done % 100 == 0 or done == stage.steps):
            log(
                f"{stage.name} step {done}/{stage.steps} loss {loss.item():.3f}"
                + (f" dev {score:.3f}" if score is not None else "")
                + f" ({time.perf_counter() - start:.0f} s)"
            )
    model.eval()
    tail_loss = round(sum(losses[-tail:]) / tail, 4)
    if best is None:
        return TrainedStage(stage=stage.name, kept_step=stage.steps, dev_score=None, tail_loss=tail_loss)
    model.load_state_dict(best[2])
    return TrainedStage(stage=stage.name, kept_step=best[1], dev_score=round(best[0], 4), tail_loss=tail_loss)
