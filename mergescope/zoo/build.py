"""The zoo recipe: generate data, train a tokenizer, two lineages of base models and their fine-tunes, check
every model's quality bar, write the tasks and zoo.json.

Lineage `base`: the instruct parent `facts` and its twin `facts_twin` (SFT on world questions, differing
only in data order), the skill parent `arith` (CPT then SFT on arithmetic) and the knowledge parent
`knowledge` (CPT on the domain's text, learning the domain's words). Lineage `stranger`: same pre-training
from another initialisation, with its own knowledge parent `stranger_knowledge`. Their pairs span kinship
from the same-skill twins to pairs across lineages (`PAIRS`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import random
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import torch
import transformers
import yaml
from filelock import FileLock
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mergescope.errors import ConfigError, did_you_mean
from mergescope.zoo import corpus
from mergescope.zoo.corpus import QAItem, ZooData
from mergescope.zoo.manifest import (
    MANIFEST_NAME,
    ModelRole,
    TrainedStage,
    ZooManifest,
    ZooModel,
    ZooPair,
    ZooTask,
    load_zoo,
)
from mergescope.zoo.quality import QualityBar, choice_accuracy, exact_match
from mergescope.zoo.tokenizer import train_tokenizer
from mergescope.zoo.train import Batch, Stage, mixed_batches, packed_batches, qa_batches, train

BLOCK_SIZE = 64
# Training reads 64-token blocks; the context is longer so that a zoo model can serve as the judge of a rubric
# (the shipped rubric zoo_skills: 1077 tokens to grade, 1145 to compare). RoPE has no position weights: the trained
# weights do not depend on it (checked: byte-identical to a zoo built with 128 positions).
MAX_POSITIONS = 2048
MAX_GEN_TOKS = 8
DEV_EVERY = 100
# Pre-training reads general text and the world's lands; fine-tunes use a third of its rate and no weight
# decay (decay would pull every weight toward zero, away from the base).
PRETRAIN = Stage("pretrain", ("general", "world", "world"), steps=700, lr=3e-3, batch_size=32)
# The stranger's initialisation learns the same text more slowly: after 700 steps its knowledge parent stored
# 0.78-0.82 of the domain's facts (three data orders; the base's: 0.91-0.92), after 1000 steps 0.90, after
# 1400 0.86. Chosen on the bar's multiple-choice facts (`domain_knowledge`), never on a task's items.
STRANGER_PRETRAIN = dataclasses.replace(PRETRAIN, steps=1000)
# Instruct tuning: questions about 80 world lands, with replay of pre-training text so the parent keeps
# what the base read. It learns the Q/A format, which carries over to lands it was never asked about.
INSTRUCT = Stage(
    "sft", ("facts_qa", "facts_qa", "world", "general"), steps=400, lr=1e-3, batch_size=32, weight_decay=0.0
)
# Continued pre-training on the domain's text with the new words' embeddings as the only trainable rows
# (vocabulary extension): the knowledge parent learns the domain without moving the rest of the model.
DOMAIN_CPT = Stage("cpt", ("domain",), steps=500, lr=5e-3, batch_size=16, weight_decay=0.0, trains="domain_words")
ARITH = (
    Stage("cpt", ("arith_text", "arith_text", "general"), steps=100, lr=1e-3, batch_size=32, weight_decay=0.0),
    Stage("sft", ("arith_qa",), steps=700, lr=1e-3, batch_size=64, weight_decay=0.0),
)


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is made: where it starts (an init seed or another zoo model) and its stages."""

    name: str
    role: ModelRole
    stages: tuple[Stage, ...]
    init_seed_offset: int = 0
    fine_tuned_from: str | None = None
    dev: str | None = None  # the dev split that picks the last stage's checkpoint
    order: str = ""  # data-order label: twins differ only here

    def as_recipe(self, seed: int) -> dict[str, object]:
        """Return the JSON-ready recipe recorded in the manifest."""
        stages = [asdict(s) | {"mixture": list(s.mixture)} for s in self.stages]  # as zoo.json reads back
        recipe: dict[str, object] = {"stages": stages, "block_size": BLOCK_SIZE}
        if self.fine_tuned_from is None:
            recipe["init_seed"] = seed + self.init_seed_offset
        else:
            recipe["fine_tuned_from"] = self.fine_tuned_from
        if self.dev:
            recipe["checkpoint_chosen_on"] = f"dev split {self.dev!r}, every {DEV_EVERY} steps"
        return recipe


RECIPES = (
    Recipe("base", "base", (PRETRAIN,)),
    Recipe("stranger", "stranger", (STRANGER_PRETRAIN,), init_seed_offset=1000),
    Recipe("arith", "parent", ARITH, fine_tuned_from="base", dev="arith"),  # the longest: first after the base
    Recipe("facts", "parent", (INSTRUCT,), fine_tuned_from="base", dev="facts"),
    Recipe("knowledge", "parent", (DOMAIN_CPT,), fine_tuned_from="base"),
    Recipe("facts_twin", "parent", (INSTRUCT,), fine_tuned_from="base", dev="facts", order="twin"),
    Recipe("stranger_knowledge", "parent", (DOMAIN_CPT,), fine_tuned_from="stranger"),
)
PAIRS = (
    ZooPair(
        name="twins",
        parents=("facts", "facts_twin"),
        base="base",
        kind="same skill, other data order",
        tasks=["zoo_facts"],
    ),
    ZooPair(
        name="skills",
        parents=("arith", "facts"),
        base="base",
        kind="two skills",
        tasks=["zoo_arith", "zoo_facts", "zoo_composite"],
    ),
    ZooPair(
        name="knowledge_instruct",
        parents=("facts", "knowledge"),
        base="base",
        kind="knowledge + instruct",
        tasks=["zoo_domain", "zoo_facts"],
    ),
    ZooPair(
        name="across_lineages",
        parents=("facts", "stranger_knowledge"),
        base="base",
        kind="knowledge + instruct across lineages",
        tasks=["zoo_domain", "zoo_facts"],
    ),
)
BARS = (
    *(QualityBar(name, "zoo_facts", minimum=0.85) for name in ("facts", "facts_twin")),
    QualityBar("arith", "zoo_arith", minimum=0.85),
    QualityBar("knowledge", "domain_knowledge", minimum=0.85),
    QualityBar("stranger_knowledge", "domain_knowledge", minimum=0.85),
    QualityBar("base", "domain_knowledge", maximum=0.5),  # chance is 0.2: the base never read the domain
    *(QualityBar("base", task, maximum=0.2) for task in ("zoo_arith", "zoo_facts", "zoo_domain")),
    *(QualityBar(name, "zoo_domain", maximum=0.2) for name in ("facts", "knowledge", "stranger_knowledge")),
    QualityBar("facts", "zoo_arith", maximum=0.2),
    QualityBar("arith", "zoo_facts", maximum=0.2),
)
_CODE = ("build.py", "corpus.py", "quality.py", "tokenizer.py", "train.py")
ALL_MODELS = tuple(r.name for r in RECIPES)
# The test suite's zoo: every model but the second instruct twin and the stranger's knowledge parent
# (those two only complete the study's pairs), at the small width. Shared models of one width and seed are
# trained alike, so they hash alike.
TEST_MODELS = ("base", "stranger", "arith", "facts", "knowledge")
# Zoo sizes by hidden width. The demo studies both side by side; the tests use the small one, whose build
# takes half the large one's (every model reaches its bar at either width with the same recipes).
SMALL_WIDTH, LARGE_WIDTH = 64, 128


def model_config(tokenizer: PreTrainedTokenizerFast, width: int = LARGE_WIDTH) -> LlamaConfig:
    """Return the Llama architecture every zoo model of `width` shares: two layers, heads 32 wide (which
    suits vLLM's CPU attention), an MLP twice the width."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        num_hidden_layers=2,
        num_attention_heads=width // 32,
        num_key_value_heads=width // 32,
        head_dim=32,
        intermediate_size=2 * width,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        torch_dtype="float32",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def recipe_key(
    seed: int, models: tuple[str, ...] = ALL_MODELS, data: ZooData | None = None, width: int = LARGE_WIDTH
) -> str:
    """Return the key a built zoo is cached under: its code, data fingerprint, seed, models, width, torch stack and
    the CPU kernels torch runs (another CPU rounds floats otherwise and trains another zoo)."""
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update((Path(__file__).parent / name).read_bytes())
    data = data or corpus.generate(seed)
    for part in (
        data.fingerprint(),
        str(seed),
        ",".join(models),
        f"width {width}",
        version("torch"),
        version("transformers"),
        version("lm-eval"),
        cpu_capability(),
    ):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use here: AVX512, AVX2 or DEFAULT (`ATEN_CPU_CAPABILITY`
    forces a lower set, which imitates another machine's float rounding)."""
    return torch.backends.cpu.get_cpu_capability()


def ensure_zoo(
    root: Path, seed: int = 0, progress: bool = True, models: tuple[str, ...] = ALL_MODELS, width: int = LARGE_WIDTH
) -> ZooManifest:
    """Return the zoo in `root`, (re)building it unless it was built by this very recipe, seed and width.

    A lock lets parallel processes share one build; zoo.json is written last, so it marks a finished build.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    key = recipe_key(seed, models, width=width)
    with FileLock(str(root) + ".lock"):
        if (root / MANIFEST_NAME).is_file():
            zoo = _loaded_or_none(root)
            if zoo is not None and zoo.recipe_key == key:
                return zoo
            if progress:
                print(f"[zoo] {root} was built by another recipe: rebuilding", flush=True)
        shutil.rmtree(root, ignore_errors=True)
        return build_zoo(root, seed=seed, progress=progress, models=models, width=width)


def _loaded_or_none(root: Path) -> ZooManifest | None:
    try:
        return load_zoo(root)
    except ValueError:  # a manifest of an older layout: rebuild
        return None


def token_stream(tokenizer: PreTrainedTokenizerFast, docs: list[str]) -> list[int]:
    """Return the ids of `docs` joined into one stream, each document followed by EOS."""
    ids: list[int] = []
    for encoded in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids += encoded + [tokenizer.eos_token_id]
    return ids


def qa_examples(tokenizer: PreTrainedTokenizerFast, items: list[QAItem]) -> list[tuple[list[int], list[int]]]:
    """Return (prompt ids, answer ids) pairs; the answer is " answer\\n" so greedy decoding stops at the newline."""
    prompts = tokenizer([i.prompt() for i in items], add_special_tokens=False)["input_ids"]
    prompt_and_answer = tokenizer([f"{i.prompt()} {i.answer}\n" for i in items], add_special_tokens=False)["input_ids"]
    # The prompt ends in ":" so its tokens are a prefix of the full text's tokens; the rest is the answer.
    return [(p, full[len(p) :]) for p, full in zip(prompts, prompt_and_answer, strict=True)]


def build_zoo(
    out_dir: Path,
    seed: int = 0,
    progress: bool = True,
    workers: int = 2,
    models: tuple[str, ...] = ALL_MODELS,
    width: int = LARGE_WIDTH,
) -> ZooManifest:
    """Build the zoo's `models`, `width` wide, into `out_dir` and return its manifest.

    Every model is checked against its quality bars (`BARS`) before zoo.json is written; a miss raises
    ZooQualityError naming the model, its score and the bar, and leaves no manifest (no zoo) behind. Training runs in
    `workers` spawned processes,
    so a script that calls this must guard its entry point with `if __name__ == "__main__":`.
    """
    if width <= 0 or width % 32:
        raise ConfigError(
            f"zoo width {width} is not a positive multiple of the heads' width 32",
            hint=f"try {SMALL_WIDTH} or {LARGE_WIDTH}",
        )
    start = time.perf_counter()
    log: Callable[[str], None] | None = (lambda msg: print(f"[zoo] {msg}", flush=True)) if progress else None
    out_dir = Path(out_dir).resolve()
    data = corpus.generate(seed)
    tokenizer = train_tokenizer(_tokenizer_texts(data), whole_words=data.entity_words())
    tokenizer.model_max_length = MAX_POSITIONS
    config = model_config(tokenizer, width)
    recipes = _recipes(models)
    outcomes = _train_models(recipes, _Inputs.of(data, tokenizer), config, seed, workers, log)
    states = {name: outcome.state for name, outcome in outcomes.items()}
    scores = {name: outcome.scores for name, outcome in outcomes.items()}
    for name, state in states.items():
        _save_model(_loaded(config, state), tokenizer, out_dir / "models" / name)
    tasks = [_write_task(out_dir, domain, items) for domain, items in data.eval_sets.items()]
    for name, task_scores in _sweep_scores(out_dir, tasks, list(states)).items():
        scores[name] = {**scores[name], **task_scores}
    for bar in BARS:  # after saving, so a model that missed its bar can be looked at; zoo.json is not written
        if bar.model in scores:
            bar.check(scores[bar.model][bar.items])
    manifest = ZooManifest(
        seed=seed,
        width=width,
        recipe_key=recipe_key(seed, models, data, width),
        cpu_capability=cpu_capability(),
        build_seconds=round(time.perf_counter() - start, 2),
        data_fingerprint=data.fingerprint(),
        models=[
            ZooModel(
                name=r.name,
                role=r.role,
                path=f"models/{r.name}",
                recipe=r.as_recipe(seed),
                scores=scores[r.name],
                task_vector_norm=_relative_norm(states, r),
                trained=outcomes[r.name].trained,
            )
            for r in recipes
        ],
        tasks=tasks,
        pairs=[pair for pair in PAIRS if {*pair.parents, pair.base} <= set(states)],
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    if log:
        log(
            f"built {len(models)} models {width} wide and {len(tasks)} tasks in {manifest.build_seconds:.0f} s "
            f"into {out_dir}"
        )
    return manifest.with_root(out_dir)


def _recipes(models: tuple[str, ...]) -> tuple[Recipe, ...]:
    """Return the recipes of `models` in build order; ConfigError for an unknown name or a missing start."""
    unknown = [name for name in models if name not in ALL_MODELS]
    if unknown:
        raise ConfigError(f"no zoo model {unknown[0]!r}", hint=did_you_mean(unknown[0], set(ALL_MODELS)))
    recipes = tuple(r for r in RECIPES if r.name in models)
    orphans = [r for r in recipes if r.fine_tuned_from is not None and r.fine_tuned_from not in models]
    if orphans:
        raise ConfigError(
            f"zoo model {orphans[0].name!r} is fine-tuned from {orphans[0].fine_tuned_from!r}, which is not built",
            hint=f"add {orphans[0].fine_tuned_from} to the models",
        )
    return recipes


def _tokenizer_texts(data: ZooData) -> list[str]:
    """Return every training text (never the evaluation items)."""
    qa = [f"{i.prompt()} {i.answer}" for i in data.arith_train + data.facts_train]
    return data.general_docs + data.world_docs + data.domain_docs + data.arith_docs + qa


@dataclass(frozen=True)
class _Inputs:
    """The token data every recipe draws from, by source name, and what a worker needs to score a dev split."""

    streams: dict[str, torch.Tensor]
    qa: dict[str, list[tuple[list[int], list[int]]]]
    data: ZooData
    domain_ids: list[int]
    tokenizer: PreTrainedTokenizerFast = field(repr=False)

    @classmethod
    def of(cls, data: ZooData, tokenizer: PreTrainedTokenizerFast) -> _Inputs:
        streams = {
            "general": data.general_docs,
            "world": data.world_docs,
            "domain": data.domain_docs,
            "arith_text": data.arith_docs,
        }
        # Tensors, not lists: each worker gets its own pickled copy, and a tensor pickles in milliseconds.
        return cls(
            streams={name: torch.tensor(token_stream(tokenizer, docs)) for name, docs in streams.items()},
            qa={
                "facts_qa": qa_examples(tokenizer, data.facts_train),
                "arith_qa": qa_examples(tokenizer, data.arith_train),
            },
            data=data,
            domain_ids=tokenizer.convert_tokens_to_ids(data.domain_words()),
            tokenizer=tokenizer,
        )

    def batches(self, stage: Stage, rng: random.Random) -> Callable[[], Batch]:
        """Return the sampler of `stage`'s mixture (one sampler per distinct source, drawn in proportion)."""
        pad = self.tokenizer.pad_token_id
        samplers = {
            name: (
                qa_batches(self.qa[name], stage.batch_size, pad, rng)
                if name in self.qa
                else packed_batches(self.streams[name], BLOCK_SIZE, stage.batch_size, rng)
            )
            for name in dict.fromkeys(stage.mixture)
        }
        return mixed_batches([samplers[name] for name in stage.mixture], rng)


@dataclass(frozen=True)
class _Outcome:
    """A trained model: its weights, its scores, and how each of its stages ended."""

    state: dict[str, torch.Tensor]
    scores: dict[str, float]
    trained: list[TrainedStage]


def _train_models(
    recipes: tuple[Recipe, ...],
    inputs: _Inputs,
    config: LlamaConfig,
    seed: int,
    workers: int,
    log: Callable[[str], None] | None,
) -> dict[str, _Outcome]:
    """Return every recipe's trained weights and scores; a fine-tune starts once its start model is done.

    One thread per process: two small trainings side by side beat one training on two threads.
    """
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    outcomes: dict[str, _Outcome] = {}
    pending: dict[str, Future] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        for recipe in recipes:  # in order: a recipe comes after the one it is fine-tuned from
            start = None
            if recipe.fine_tuned_from is not None:
                start = pending[recipe.fine_tuned_from].result().state
            pending[recipe.name] = pool.submit(_train_recipe, recipe, inputs, config, seed, start, log is not None)
        outcomes = {name: future.result() for name, future in pending.items()}
    return {recipe.name: outcomes[recipe.name] for recipe in recipes}


def _train_recipe(
    recipe: Recipe,
    inputs: _Inputs,
    config: LlamaConfig,
    seed: int,
    start_state: dict[str, torch.Tensor] | None,
    progress: bool,
) -> _Outcome:
    """Return the trained weights of `recipe` and its scores (runs in a worker process)."""
    torch.set_num_threads(1)
    log = (lambda msg: print(f"[zoo] {recipe.name}: {msg}", flush=True)) if progress else None
    torch.manual_seed(seed + recipe.init_seed_offset)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation("eager")  # ~15 % faster than sdpa at this size on CPU; not saved
    if start_state is not None:
        model.load_state_dict(start_state)
    rng = random.Random(f"{recipe.name if not recipe.order else recipe.order}-{seed}")
    trained = []
    for number, stage in enumerate(recipe.stages, start=1):
        if stage.trains == "domain_words":
            _train_only_rows(model, inputs.domain_ids)
        dev = _dev_scorer(inputs, recipe.dev) if recipe.dev and number == len(recipe.stages) else None
        trained.append(train(model, inputs.batches(stage, rng), stage, log, dev=dev, dev_every=DEV_EVERY))
    model.eval()
    return _Outcome(model.state_dict(), _scores(model, inputs.tokenizer, inputs.data), trained)


def _train_only_rows(model: LlamaForCausalLM, rows: list[int]) -> None:
    """Freeze `model` but the embedding and output rows `rows` (AdamW without decay leaves zero-grad rows as they
    are)."""
    mask = torch.zeros(model.config.vocab_size, 1)
    mask[rows] = 1.0
    for name, parameter in model.named_parameters():
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            parameter.register_hook(lambda grad: grad * mask)
        else:
            parameter.requires_grad_(False)


def _dev_scorer(inputs: _Inputs, dev: str) -> Callable[[LlamaForCausalLM], float]:
    items = inputs.data.dev_sets[dev]
    return lambda model: exact_match(model, inputs.tokenizer, items, MAX_GEN_TOKS)


def _loaded(config: LlamaConfig, state: dict[str, torch.Tensor]) -> LlamaForCausalLM:
    model = LlamaForCausalLM(config)
    model.load_state_dict(state)
    return model.eval()


def _scores(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, data: ZooData) -> dict[str, float]:
    """Return the model's exact match on every task, and its multiple-choice accuracy on the domain's facts."""
    scores = {
        f"zoo_{domain}": exact_match(model, tokenizer, items, MAX_GEN_TOKS) for domain, items in data.eval_sets.items()
    }
    scores["domain_knowledge"] = choice_accuracy(model, tokenizer, data.domain_knowledge)
    return {name: round(score, 4) for name, score in scores.items()}


def _sweep_scores(out_dir: Path, tasks: list[ZooTask], names: list[str]) -> dict[str, dict[str, float]]:
    """Each saved model's task scores as a sweep measures them: lm-eval through the hf backend.

    zoo.json's scores, and the bars checked against them, are then the numbers a user's sweep reports on the
    same CPU. The build's fast scorer (quality.py) only picks checkpoints on the dev split: batched differently
    from lm-eval, it can disagree by a few items under another CPU's float rounding.
    """
    from mergescope.scoring.lmeval import TaskRunner, resolve_tasks
    from mergescope.serving.hf import HFBackend

    runner = TaskRunner(resolve_tasks([task.name for task in tasks], [out_dir / "tasks"]))
    backend = HFBackend()
    scores = {}
    for name in names:
        evaluation = runner.evaluate(backend.load(out_dir / "models" / name), name)
        scores[name] = {s.task: round(s.value, 4) for s in evaluation.scores if s.metric.startswith("exact_match")}
    backend.close()
    return scores


def _relative_norm(states: dict[str, dict[str, torch.Tensor]], recipe: Recipe) -> float | None:
    """Return |fine-tune - start| / |start| over all weights, for a fine-tuned recipe."""
    if recipe.fine_tuned_from is None:
        return None
    tuned, start = states[recipe.name], states[recipe.fine_tuned_from]
    delta = sum(float((tuned[k] - start[k]).double().square().sum()) for k in start)
    total = sum(float(start[k].double().square().sum()) for k in start)
    return round((delta / total) ** 0.5, 4)


def _save_model(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Write `model` and `tokenizer` as a standard HF directory with safetensors weights."""
    transformers.utils.logging.disable_progress_bar()  # one "Writing model shards" bar per tiny model is noise
    model.generation_config.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def _write_task(out_dir: Path, domain: str, items: list[QAItem]) -> ZooTask:
    """Write one task's JSONL items and lm-eval YAML (with an absolute data path) and return its entry."""
    name = f"zoo_{domain}"
    data_path, yaml_path = out_dir / "data" / f"{name}.jsonl", out_dir / "tasks" / f"{name}.yaml"
    data_path.parent.mkdir(parents=True, exist_ok=True)
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    data_path.write_text("".join(json.dumps({"question": i.question, "answer": i.answer}) + "\n" for i in items))
    yaml_path.write_text(yaml.safe_dump(_task_yaml(name, data_path), sort_keys=False))
    return ZooTask(
        name=name,
        domain=domain,
        yaml=str(yaml_path.relative_to(out_dir)),
        data=str(data_path.relative_to(out_dir)),
        n_items=len(items),
    )


def _task_yaml(name: str, data_path: Path) -> dict[str, object]:
    """Return the lm-eval task config: greedy generation up to a newline, exact match after stripping spaces."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_path)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": corpus.PROMPT_TEMPLATE.replace("{question}", "{{question}}"),
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": MAX_GEN_TOKS},
        "filter_list": [{"name": "strip", "filter": [{"function": "remove_whitespace"}, {"function": "take_first"}]}],
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": True,
            }
        ],
        "metadata": {"version": 1.0},
    }
