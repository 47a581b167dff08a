"""The seed paper's parents made from a real pretrained chat model (SmolLM2-135M-Instruct), cached by recipe.

Lu et al. 2024 merge a CPT parent and a CPT-then-SFT parent with an instruct model. Here, from the instruct model:

- `cpt`: continued pre-training on documents about made-up lands (real_world.py): facts no pretrained model knows.
- `cpt_sft`: `cpt` then supervised chat on questions about *practice* lands, whose documents it also read; it is
  never asked a question of the dev or eval split, and never in their phrasings.

`ensure_parents(DIR)` returns DIR's parents when they were built by this very recipe, else (re)builds them:
DIR/instruct (written by `mergescope models smollm2` when missing), DIR/cpt, DIR/cpt_sft as standard bf16 model
directories, and DIR/parents.json: the recipe and its key, each model's dev scores (domain recall in chat,
document-form knowledge, general questions: forgetting is the instruct model's general score less a parent's),
task-vector norms relative to the instruct model, and build seconds. Every score is of the saved bf16 weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from pydantic import BaseModel, ConfigDict

from mergescope.errors import ConfigError, did_you_mean
from mergescope.zoo import real_scores, real_world
from mergescope.zoo.real_world import GENERAL_PROMPTS, RealWorld
from mergescope.zoo.train import Batch, Stage, mixed_batches, packed_batches, qa_batches, train

MANIFEST_NAME = "parents.json"
INSTRUCT, CPT, CPT_SFT = "instruct", "cpt", "cpt_sft"
_CODE = ("real.py", "real_world.py", "real_scores.py", "train.py", "corpus.py", "quality.py")
_WEIGHTS = "model.safetensors"
REPLY_TOKENS = 64  # the instruct model's replies replayed against forgetting are cut here
# Files of the instruct model's directory that a parent shares (config, tokenizer, chat template).
_SHARED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class RealRecipe:
    """Everything that decides the parents' weights: the world's size, both stages and the CPU threads (the
    thread count changes how float sums split, so it is part of the key).

    Stage mixtures name the sources of a batch: `documents` (packed document text), `chat_qa` (the practice
    lands' questions, loss on the reply), `replies` (the instruct model's own greedy replies to general prompts,
    against forgetting). A stage's `trains` is "all" or "no_embeddings" (the tied embedding and output matrix frozen).
    """

    n_lands: int
    n_practice_lands: int
    docs_per_land: int
    cpt: Stage
    sft: Stage
    block_size: int = 64
    threads: int = 1
    general_items: int | None = None  # score the first N of chat_general's questions (None: all)
    reply_prompts: int | None = None  # replay the instruct model's replies to the first N general prompts

    def as_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values."""
        return json.loads(json.dumps(asdict(self)))


# R4 of docs/research/real_model_recipes.md, chosen on the dev split: the CPT parent knows the read facts (0.95 in
# document form, 0.92 answered in chat) at the cost of general answers (0.66 -> 0.30); SFT keeps the facts and
# wins back part of the general answers (0.50). 14 minutes on 2 cores.
DEFAULT_RECIPE = RealRecipe(
    n_lands=10,
    n_practice_lands=6,
    docs_per_land=20,
    cpt=Stage(
        "cpt", ("documents",), steps=100, lr=1e-4, batch_size=8, warmup_steps=10, weight_decay=0.0,
        trains="no_embeddings",
    ),
    sft=Stage(
        "sft", ("chat_qa", "chat_qa", "documents", "replies"), steps=40, lr=3e-5, batch_size=8, warmup_steps=10,
        weight_decay=0.0, trains="no_embeddings",
    ),
)  # fmt: skip
# A few steps of each stage: the slow test's end-to-end build.
QUICK_RECIPE = dataclasses.replace(
    DEFAULT_RECIPE,
    n_lands=3,
    n_practice_lands=2,
    docs_per_land=2,
    cpt=dataclasses.replace(DEFAULT_RECIPE.cpt, steps=2, batch_size=2, warmup_steps=1),
    sft=dataclasses.replace(DEFAULT_RECIPE.sft, steps=2, batch_size=2, warmup_steps=1),
    general_items=4,
    reply_prompts=2,
)
RECIPES = {"default": DEFAULT_RECIPE, "quick": QUICK_RECIPE}


def recipe_named(name: str) -> RealRecipe:
    """The shipped recipe `name`; ConfigError with a did-you-mean for an unknown one."""
    if name not in RECIPES:
        raise ConfigError(f"no parents recipe {name!r}", hint=did_you_mean(name, set(RECIPES)))
    return RECIPES[name]


class ParentModel(BaseModel):
    """One model of the set: its directory (relative to the set's), scores, and how far it moved from the instruct
    model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: str
    # dev_domain (chat recall; _first_sentence: in the reply's first sentence), dev_knowledge (document form),
    # general (chat_general)
    scores: dict[str, float]
    forgetting: float | None = None  # the instruct model's general score less this one's
    task_vector_norm: float | None = None  # |parent - instruct| / |instruct| over the saved weights
    tail_loss: float | None = None  # mean loss over the last tenth of its stage's steps
    seconds: float | None = None  # training time of its stage


class ParentSet(BaseModel):
    """parents.json: what a build made, from what, and how each model scored on the dev split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipe_key: str
    recipe: dict[str, Any]
    seed: int
    cpu_capability: str
    torch_version: str
    data_fingerprint: str
    instruct_sha256: str
    split_sizes: dict[str, int]  # dev and eval questions (eval: chat_domain's items about the lands read here)
    lands: list[str]
    models: list[ParentModel]
    build_seconds: float
    load_average: tuple[float, float]  # at the build's start and end: other work on the machine slows it

    def model(self, name: str) -> ParentModel:
        """The model called `name`; KeyError naming the known ones."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"no model {name!r}; known: {', '.join(m.name for m in self.models)}")


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here (AVX512, AVX2, DEFAULT): another set rounds otherwise."""
    return torch.backends.cpu.get_cpu_capability()


def world_of(recipe: RealRecipe, seed: int) -> RealWorld:
    """The world `recipe` reads, for `seed`."""
    return real_world.generate(seed, recipe.n_lands, recipe.n_practice_lands, recipe.docs_per_land)


def recipe_key(recipe: RealRecipe, seed: int, instruct_sha256: str, world: RealWorld | None = None) -> str:
    """The key a built set is cached under: recipe, code, data, seed, start weights, torch and CPU kernels."""
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    world = world or world_of(recipe, seed)
    for part in (
        json.dumps(recipe.as_dict(), sort_keys=True),
        world.fingerprint(),
        str(seed),
        instruct_sha256,
        version("torch"),
        version("transformers"),
        cpu_capability(),
    ):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def load_parents(root: Path) -> ParentSet:
    """The manifest of the set built in `root`; FileNotFoundError when it has none."""
    return ParentSet.model_validate_json((Path(root) / MANIFEST_NAME).read_text())


def ensure_parents(
    root: Path, recipe: RealRecipe = DEFAULT_RECIPE, seed: int = 0, log: Callable[[str], None] | None = print
) -> ParentSet:
    """The parents in `root`, (re)built unless they were built by this very recipe, seed, code and machine kind."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        instruct = ensure_instruct(root / INSTRUCT)
        key = recipe_key(recipe, seed, file_sha256(instruct / _WEIGHTS))
        if (root / MANIFEST_NAME).is_file():
            try:
                built = load_parents(root)
            except ValueError:  # a manifest of another layout: rebuild
                built = None
            if built is not None and built.recipe_key == key:
                return built
            if log:
                log(f"[parents] {root} was built by another recipe: rebuilding")
        (root / MANIFEST_NAME).unlink(missing_ok=True)  # written last: it marks a finished build
        for name in (CPT, CPT_SFT):
            shutil.rmtree(root / name, ignore_errors=True)
        return build_parents(root, recipe, seed, log)


def ensure_instruct(directory: Path) -> Path:
    """The instruct model's directory, written from the packaged model when it is not there."""
    if not (directory / _WEIGHTS).is_file():
        from mergescope.models.packaged import materialise

        shutil.rmtree(directory, ignore_errors=True)
        materialise("smollm2", directory)
    return directory


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_parents(
    root: Path, recipe: RealRecipe, seed: int = 0, log: Callable[[str], None] | None = print
) -> ParentSet:
    """Build `cpt` and `cpt_sft` from root/instruct into `root` and write parents.json; return its contents."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(recipe.threads)
    world, instruct_dir = world_of(recipe, seed), root / INSTRUCT
    instruct_sha = file_sha256(instruct_dir / _WEIGHTS)
    shared = shared_files(instruct_dir)
    tokenizer = AutoTokenizer.from_pretrained(instruct_dir)
    model = AutoModelForCausalLM.from_pretrained(instruct_dir, dtype=torch.float32)
    instruct_state = {k: v.clone() for k, v in model.state_dict().items()}
    say = log or (lambda _: None)
    general = real_scores.general_items()[: recipe.general_items]
    scores = {INSTRUCT: dev_scores(model, tokenizer, world, general)}
    say(f"[parents] instruct: {_shown(scores[INSTRUCT])}")
    sources = _Sources.of(tokenizer, world, model, recipe)
    rng = random.Random(f"real-parents-{seed}")
    torch.manual_seed(seed)
    entries = [ParentModel(name=INSTRUCT, path=INSTRUCT, scores=scores[INSTRUCT])]
    for name, stage in ((CPT, recipe.cpt), (CPT_SFT, recipe.sft)):
        stage_start = time.perf_counter()
        trained = _train_stage(model, stage, sources.batches(stage, recipe.block_size, rng), say)
        seconds = round(time.perf_counter() - stage_start, 1)
        round_to_bf16(model, seed)  # the next stage starts from the saved parent, as a user's would
        save_parent(model, shared, root / name, name)
        stage_scores = dev_scores(model, tokenizer, world, general)
        entries.append(
            ParentModel(
                name=name,
                path=name,
                scores=stage_scores,
                forgetting=round(scores[INSTRUCT]["general"] - stage_scores["general"], 4),
                task_vector_norm=relative_norm(model.state_dict(), instruct_state),
                tail_loss=trained.tail_loss,
                seconds=seconds,
            )
        )
        say(f"[parents] {name}: {_shown(stage_scores)}, {seconds:.0f} s")
    manifest = ParentSet(
        recipe_key=recipe_key(recipe, seed, instruct_sha, world),
        recipe=recipe.as_dict(),
        seed=seed,
        cpu_capability=cpu_capability(),
        torch_version=version("torch"),
        data_fingerprint=world.fingerprint(),
        instruct_sha256=instruct_sha,
        split_sizes={"dev": len(world.dev), "eval": len(world.eval)},
        lands=[land.name for land in world.lands],
        models=entries,
        build_seconds=round(time.perf_counter() - started, 1),
        load_average=(load_start, os.getloadavg()[0]),
    )
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    say(f"[parents] built in {manifest.build_seconds:.0f} s into {root}")
    return manifest


def _shown(scores: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in scores.items())


def dev_scores(model, tokenizer, world: RealWorld, general: list[real_scores.ChatItem]) -> dict[str, float]:
    """The model's dev scores in bf16, as a study serves it: domain recall in chat (whole reply, first sentence),
    document-form knowledge, general questions."""
    scored = _bf16_copy(model)
    dev = real_scores.chat_items(world.dev)
    domain_replies = real_scores.chat_replies(scored, tokenizer, [item.question for item in dev])
    general_replies = real_scores.chat_replies(scored, tokenizer, [item.question for item in general])
    scores = {
        "dev_domain": real_scores.recall(domain_replies, dev),
        "dev_domain_first_sentence": real_scores.recall(domain_replies, dev, first_sentence=True),
        "dev_knowledge": real_scores.knowledge(scored, tokenizer, world.knowledge),
        "general": real_scores.recall(general_replies, general),
    }
    return {name: round(value, 4) for name, value in scores.items()}


def _bf16_copy(model):
    import copy

    return copy.deepcopy(model).to(torch.bfloat16).eval()


def round_to_bf16(model, seed: int) -> None:
    """Round every weight to a bf16 value, stochastically (seeded): what is saved, and what the next stage starts from.

    A short fine-tune moves most weights by less than half a bf16 step (SmolLM2's weights are ~0.13, a step there
    ~5e-4): rounded to the nearest bf16 value the move is lost (a CPT's loss 3.74 in float32 was 4.25 so, 4.75 before
    training). Rounded up or down with probability in proportion to the distance, each weight keeps its move in
    expectation (3.74): the error is noise of the size bf16 storage already adds. A weight that did not move is a
    bf16 value already and stays exactly as it was.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(stochastic_bf16(parameter.detach().float().contiguous(), generator).float())


def stochastic_bf16(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`values` (float32) rounded to bf16 stochastically: random low 16 bits added, then cut off."""
    bits = values.view(torch.int32)
    noise = torch.randint(0, 1 << 16, values.shape, generator=generator, dtype=torch.int32)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


def relative_norm(state: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> float:
    """|state - start| / |start| over every weight (tied weights once)."""
    names = sorted({k for k in start if k != "lm_head.weight"})
    delta = sum(float((state[k].double() - start[k].double()).square().sum()) for k in names)
    total = sum(float(start[k].double().square().sum()) for k in names)
    return round((delta / total) ** 0.5, 6)


def shared_files(instruct_dir: Path) -> dict[str, bytes]:
    """The instruct model's files a parent shares (config, tokenizer, chat template), read once at the start."""
    missing = [name for name in _SHARED_FILES if not (instruct_dir / name).is_file()]
    if missing:
        raise ConfigError(
            f"{instruct_dir} lacks {', '.join(missing)}",
            hint="write it with `mergescope models smollm2 DIR` (or delete it: it is rewritten)",
        )
    return {name: (instruct_dir / name).read_bytes() for name in _SHARED_FILES}


def save_parent(model, shared: dict[str, bytes], out: Path, name: str) -> None:
    """Write `model` as a bf16 model directory laid out as the instruct model's (its config and tokenizer)."""
    from mergescope.models.packaged import write_weights

    out.mkdir(parents=True, exist_ok=True)
    write_weights(model, torch.bfloat16, out / _WEIGHTS)
    (out / _WEIGHTS).chmod(0o644)
    for file, content in shared.items():
        (out / file).write_bytes(content)
    (out / "README.md").write_text(
        f"# {name}: a parent made from SmolLM2-135M-Instruct by mergescope\n\nWritten by "
        f"`mergescope models parents` (mergescope/zoo/real.py); its recipe and dev scores are in "
        f"../{MANIFEST_NAME}.\n"
    )


def _train_stage(model, stage: Stage, next_batch: Callable[[], Batch], say: Callable[[str], None]):
    """Train `model` in place through `stage`, with the tied embedding frozen for a "no_embeddings" stage."""
    frozen = model.get_input_embeddings().weight
    frozen.requires_grad_(stage.trains != "no_embeddings")
    if stage.trains not in ("all", "no_embeddings"):
        raise ValueError(f"stage {stage.name}: trains {stage.trains!r} is not 'all' or 'no_embeddings'")
    started, steps = time.perf_counter(), 0

    def counted() -> Batch:  # train() logs every 100 steps; a real model's step takes seconds
        nonlocal steps
        steps += 1
        if steps % 10 == 0:
            say(f"[parents] {stage.name} step {steps}/{stage.steps} ({time.perf_counter() - started:.0f} s)")
        return next_batch()

    trained = train(model, counted, stage, log=lambda msg: say(f"[parents] {msg}"))
    frozen.requires_grad_(True)
    return trained


@dataclass(frozen=True)
class _Sources:
    """Token data of every source a stage may draw from."""

    documents: torch.Tensor  # one stream, documents joined by <|endoftext|>
    chat_qa: list[tuple[list[int], list[int]]]
    replies: list[tuple[list[int], list[int]]]
    pad_id: int

    @classmethod
    def of(cls, tokenizer, world: RealWorld, model, recipe: RealRecipe) -> _Sources:
        separator = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        stream: list[int] = []
        for ids in tokenizer(world.documents, add_special_tokens=False)["input_ids"]:
            stream += ids + [separator]
        uses_replies = "replies" in recipe.cpt.mixture + recipe.sft.mixture
        prompts = list(GENERAL_PROMPTS[: recipe.reply_prompts]) if uses_replies else []
        replies = real_scores.chat_replies(model, tokenizer, prompts, REPLY_TOKENS)
        return cls(
            documents=torch.tensor(stream),
            chat_qa=chat_examples(tokenizer, world.train_qa),
            replies=chat_examples(tokenizer, list(zip(prompts, replies, strict=True))),
            pad_id=tokenizer.pad_token_id,
        )

    def batches(self, stage: Stage, block_size: int, rng: random.Random) -> Callable[[], Batch]:
        """The sampler of `stage`'s mixture, one batch from one source, drawn in the mixture's proportions."""
        samplers = {}
        for name in dict.fromkeys(stage.mixture):
            if name == "documents":
                samplers[name] = packed_batches(self.documents, block_size, stage.batch_size, rng)
            elif name in ("chat_qa", "replies"):
                samplers[name] = qa_batches(getattr(self, name), stage.batch_size, self.pad_id, rng)
            else:
                raise ValueError(f"stage {stage.name}: unknown source {name!r} (documents, chat_qa, replies)")
        return mixed_batches([samplers[name] for name in stage.mixture], rng)


def chat_examples(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reply ids) of each (question, reply): the chat template's user turn, then the reply and its
    end-of-turn token (the loss is on the reply only)."""
    end = tokenizer.eos_token
    return [
        (real_scores.chat_prompt(tokenizer, question), tokenizer(reply + end, add_special_tokens=False)["input_ids"])
        for question, reply in pairs
    ]
