"""The zoo recipe: generate data, train a tokenizer, a base, two parents and a stranger, write tasks and zoo.json."""

from __future__ import annotations

import json
import multiprocessing
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mergescope.zoo import corpus
from mergescope.zoo.corpus import QAItem, ZooData
from mergescope.zoo.manifest import MANIFEST_NAME, ZooManifest, ZooModel, ZooTask
from mergescope.zoo.tokenizer import train_tokenizer
from mergescope.zoo.train import Stage, mixed_batches, packed_batches, qa_batches, train

BLOCK_SIZE = 64
MAX_POSITIONS = 128
MAX_GEN_TOKS = 8
PRETRAIN = Stage("pretrain", "general", steps=500, lr=3e-3, batch_size=32)
# Fine-tunes use a third of the pre-training rate and no weight decay (decay would pull every weight toward
# zero, away from the base), so the parents stay near the base and nearer each other than the stranger.
ARITH_STAGES = (Stage("cpt", "arith", steps=100, lr=1e-3, batch_size=32, weight_decay=0.0),
                Stage("sft", "arith", steps=800, lr=1e-3, batch_size=64, weight_decay=0.0))
FACTS_STAGES = (Stage("cpt", "facts", steps=300, lr=1e-3, batch_size=32, weight_decay=0.0),
                Stage("sft", "facts", steps=600, lr=1e-3, batch_size=64, weight_decay=0.0))


def model_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """Return the one Llama architecture every zoo model shares (head_dim 32 suits vLLM's CPU attention)."""
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, head_dim=32, intermediate_size=256, max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False, torch_dtype="float32", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )


def new_model(config: LlamaConfig, init_seed: int) -> LlamaForCausalLM:
    """Return a freshly initialised model; the init seed alone decides its weights."""
    torch.manual_seed(init_seed)
    return LlamaForCausalLM(config)


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
    return [(p, full[len(p):]) for p, full in zip(prompts, prompt_and_answer, strict=True)]


def build_zoo(out_dir: Path, seed: int = 0, progress: bool = True, workers: int = 2) -> ZooManifest:
    """Build the zoo into `out_dir` (about two minutes on two idle CPU cores) and return its manifest.

    Training runs in `workers` spawned processes, so a script that calls this must guard its entry point
    with `if __name__ == "__main__":`.
    """
    start = time.perf_counter()
    log: Callable[[str], None] | None = (lambda msg: print(f"[zoo] {msg}", flush=True)) if progress else None
    out_dir = Path(out_dir).resolve()
    data = corpus.generate(seed)
    tokenizer = train_tokenizer(_tokenizer_texts(data))
    tokenizer.model_max_length = MAX_POSITIONS
    models = _train_models(data, tokenizer, seed, workers, log)
    for name, (model, _) in models.items():
        _save_model(model, tokenizer, out_dir / "models" / name)
    tasks = [_write_task(out_dir, domain, items) for domain, items in data.eval_sets.items()]
    manifest = ZooManifest(
        seed=seed, build_seconds=round(time.perf_counter() - start, 2), data_fingerprint=data.fingerprint(),
        models=[ZooModel(name=name, role=_role(name), path=f"models/{name}", recipe=recipe)
                for name, (_, recipe) in models.items()],
        tasks=tasks,
    )
    (out_dir / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    if log:
        log(f"built {len(models)} models and {len(tasks)} tasks in {manifest.build_seconds:.0f} s into {out_dir}")
    return manifest.with_root(out_dir)


def _tokenizer_texts(data: ZooData) -> list[str]:
    """Return every training text (never the evaluation items)."""
    qa = [f"{i.prompt()} {i.answer}" for i in data.arith_train + data.facts_train]
    return data.general_docs + data.arith_docs + data.facts_docs + qa


def _role(name: str) -> str:
    """Return the manifest role of a zoo model name."""
    return {"base": "base", "stranger": "stranger"}.get(name, "parent")


@dataclass(frozen=True)
class _Job:
    """One model to train: its init seed, its stages, and the token data those stages read."""

    name: str
    init_seed: int
    stages: tuple[Stage, ...]
    general: list[int]
    domain: list[int] = field(default_factory=list)
    qa: list[tuple[list[int], list[int]]] = field(default_factory=list)


def _train_models(data: ZooData, tokenizer: PreTrainedTokenizerFast, seed: int, workers: int,
                  log: Callable[[str], None] | None) -> dict[str, tuple[LlamaForCausalLM, dict[str, object]]]:
    """Return every zoo model with its recipe: base, the two parents fine-tuned from it, and the stranger.

    Base and stranger pre-train side by side, then the two parents fine-tune side by side from the base:
    one thread per process, since two small trainings in parallel beat one training on two threads.
    """
    config = model_config(tokenizer)
    general = token_stream(tokenizer, data.general_docs)
    pretrain = {"base": _Job("base", seed, (PRETRAIN,), general),
                "stranger": _Job("stranger", seed + 1000, (PRETRAIN,), general)}
    parents = {name: _Job(name, seed, stages, general, token_stream(tokenizer, docs), qa_examples(tokenizer, qa))
               for name, docs, qa, stages in (("arith", data.arith_docs, data.arith_train, ARITH_STAGES),
                                              ("facts", data.facts_docs, data.facts_train, FACTS_STAGES))}
    context = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pretrained = {name: pool.submit(_train_job, job, config, None, tokenizer.pad_token_id, log is not None)
                      for name, job in pretrain.items()}
        base_state = pretrained["base"].result()
        tuned = {name: pool.submit(_train_job, job, config, base_state, tokenizer.pad_token_id, log is not None)
                 for name, job in parents.items()}
        states = {"base": base_state, **{n: f.result() for n, f in tuned.items()},
                  "stranger": pretrained["stranger"].result()}
    models = {}
    for name, state in states.items():
        model = LlamaForCausalLM(config)
        model.load_state_dict(state)
        job = pretrain.get(name) or parents[name]
        models[name] = (model.eval(), _recipe(list(job.stages), job.init_seed, "base" if name in parents else None))
    return models


def _train_job(job: _Job, config: LlamaConfig, start_state: dict[str, torch.Tensor] | None, pad_id: int,
               progress: bool) -> dict[str, torch.Tensor]:
    """Return the trained weights of `job` (runs in a worker process)."""
    torch.set_num_threads(1)
    log = (lambda msg: print(f"[zoo] {job.name}: {msg}", flush=True)) if progress else None
    model = new_model(config, job.init_seed)
    if start_state is not None:
        model.load_state_dict(start_state)
    rng = random.Random(f"{job.name}-{job.init_seed}")
    general = packed_batches(job.general, BLOCK_SIZE, job.stages[0].batch_size, rng)
    if not job.qa:
        train(model, general, job.stages[0], log)
        return model.state_dict()
    cpt, sft_stage = job.stages
    domain = packed_batches(job.domain, BLOCK_SIZE, cpt.batch_size, rng)
    # General text mixed into continued pre-training keeps the parent near the base (mergeable).
    train(model, mixed_batches([domain, domain, general], rng), cpt, log)
    sft = qa_batches(job.qa, sft_stage.batch_size, pad_id, rng)
    # For facts, domain text mixed into QA training keeps the read wording of each fact alive, which helps
    # answer the held-out phrasing; for arithmetic it only costs steps.
    train(model, mixed_batches([sft, sft, sft, domain] if job.name == "facts" else [sft], rng), sft_stage, log)
    return model.state_dict()


def _recipe(stages: list[Stage], init_seed: int, parent: str | None) -> dict[str, object]:
    """Return the JSON-ready recipe of one model."""
    recipe: dict[str, object] = {"init_seed": init_seed, "block_size": BLOCK_SIZE,
                                 "stages": [s.as_recipe() for s in stages]}
    if parent is not None:
        recipe["fine_tuned_from"] = parent
    return recipe


def _save_model(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> None:
    """Write `model` and `tokenizer` as a standard HF directory with safetensors weights."""
    model.generation_config.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                   pad_token_id=tokenizer.pad_token_id, do_sample=False)
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
    return ZooTask(name=name, domain=domain, yaml=str(yaml_path.relative_to(out_dir)),
                   data=str(data_path.relative_to(out_dir)), n_items=len(items))


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
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": True}],
        "metadata": {"version": 1.0},
    }
