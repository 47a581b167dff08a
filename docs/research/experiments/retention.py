"""Does a fine-tuning recipe make the `skills` pair (arith + facts) survive a midpoint merge?

Each recipe fine-tunes the zoo's two skill parents from a built zoo's base with the zoo's own stages and data
(mergescope.zoo.build's ARITH and INSTRUCT, the same batch order), changing one thing:

- `kl`: an added loss, KL(base || parent) of the next-token distributions on prompts outside the parent's
  domain: the other skill's questions (prompts only, never their answers) and general text. The parent
  keeps the base's behaviour on the other kind of question while it learns its own (learning without forgetting).
- `frozen`: embeddings, norms and the output head stay the base's; only attention and MLP weights move.
- `sparse`: only the top fraction of weights by gradient magnitude at the base (summed over the first
  batches of the parent's own data) move (Localize-and-Stitch's localisation, without its stitching).
- `steps` / `lr`: scale every stage's steps and learning rate.
- `format_base`: both parents start from (and are merged over) a "chat" base: the zoo's base instruct-tuned
  on generic questions about general-text sentences ("what is the last word of: ...?"), so it already knows
  the Q/A format and the stop at the newline before either skill is taught.
- `shared_cpt`: arith's continued pre-training on arithmetic text moves into the shared base (for N steps),
  as a real base has read arithmetic before anyone fine-tunes it; the arith parent is then its SFT alone.
- `lora_rank`: LoRA adapters of that rank on every linear layer (peft) are trained instead of the weights and
  merged into them before the parent is saved; the rest of the model stays the base's.

For each recipe it prints one row: each parent's exact match on its own dev split (never an lm-eval item),
what linear 0.5 and SLERP 0.5 merges (mergekit, through mergescope.merging.merge) keep of it, what half of each
task vector alone keeps (linear 0.5 of base and parent), task arithmetic at weight 1, each task vector's norm
relative to the base and the two task vectors' cosine. Rows are appended to OUT/rows.jsonl; finished recipes
are skipped on a rerun.

    PYTHONPATH=. python docs/research/experiments/retention.py ZOO_DIR OUT_DIR [RECIPE ...]
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from mergescope.merging.candidates import config_id
from mergescope.merging.merge import merge_in_memory
from mergescope.runs.records import Candidate
from mergescope.zoo import build, corpus
from mergescope.zoo.quality import exact_match
from mergescope.zoo.train import Batch, Stage, mixed_batches, packed_batches, qa_batches, train

SEED = 0
SPARSE_PROBE_BATCHES = 20


@dataclass(frozen=True)
class Variant:
    """What a recipe changes in the zoo's fine-tuning of both skill parents."""

    kl_weight: float = 0.0
    frozen: bool = False
    sparse_fraction: float | None = None
    steps: float = 1.0
    lr: float = 1.0
    from_zoo: bool = False  # the zoo's own parents, as built
    format_base: bool = False
    shared_cpt: int = 0  # steps of arith's continued pre-training given to the shared base instead
    lora_rank: int = 0  # train LoRA adapters of this rank on every linear layer (peft), merged in before saving


VARIANTS = {
    "zoo": Variant(from_zoo=True),
    "kl1": Variant(kl_weight=1.0),
    "kl5": Variant(kl_weight=5.0),
    "kl20": Variant(kl_weight=20.0),
    "frozen": Variant(frozen=True),
    "frozen_kl5": Variant(frozen=True, kl_weight=5.0),
    "sparse5_kl5": Variant(sparse_fraction=0.05, kl_weight=5.0),
    "sparse20": Variant(sparse_fraction=0.20),
    "sparse50": Variant(sparse_fraction=0.50),
    "format": Variant(format_base=True),
    "format_frozen": Variant(format_base=True, frozen=True),
    "format_kl5": Variant(format_base=True, kl_weight=5.0),
    "shared_cpt100": Variant(shared_cpt=100),
    "shared_cpt400": Variant(shared_cpt=400),
    "format_shared_cpt400": Variant(format_base=True, shared_cpt=400),
    "shared_cpt400_slow": Variant(shared_cpt=400, steps=2.0, lr=0.3),
    "slow2": Variant(steps=2.0, lr=0.5),
    "long3": Variant(steps=3.0),
    "long3_kl5": Variant(steps=3.0, kl_weight=5.0),
    "format_long3": Variant(format_base=True, steps=3.0),
    "format_long3_kl5": Variant(format_base=True, steps=3.0, kl_weight=5.0),
    "format_lora8": Variant(format_base=True, lora_rank=8, lr=3.0),
    "format_lora8_long3": Variant(format_base=True, lora_rank=8, lr=3.0, steps=3.0),
    "frozen_slow2": Variant(frozen=True, steps=2.0, lr=0.5),
}
SKILLS = {"arith": build.ARITH, "facts": (build.INSTRUCT,)}
# The chat base's instruct tuning: generic questions, with replay of general text.
FORMAT_TUNING = Stage("sft", ("format_qa", "general"), steps=300, lr=1e-3, batch_size=32, weight_decay=0.0)
# The prompts outside each parent's domain on which it must keep the base's predictions.
OTHER_QA = {"arith": "facts_qa", "facts": "arith_qa"}


class KLToBase(torch.nn.Module):
    """The parent's own loss plus `weight` x KL(base || parent) on a batch of out-of-domain prompts."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        base: LlamaForCausalLM,
        out_of_domain: Callable[[], Batch],
        weight: float,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.model = model
        self._base = (base,)  # a tuple, so the frozen base is neither trained nor in the state dict
        self.out_of_domain, self.weight, self.pad_id = out_of_domain, weight, pad_id

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> SimpleNamespace:
        loss = self.model(input_ids=input_ids, labels=labels).loss
        if self.weight:
            prompts, _ = self.out_of_domain()
            keep = prompts != self.pad_id
            with torch.no_grad():
                base_logprobs = torch.log_softmax(self._base[0](input_ids=prompts).logits, dim=-1)
            logprobs = torch.log_softmax(self.model(input_ids=prompts).logits, dim=-1)
            kl = F.kl_div(logprobs, base_logprobs, log_target=True, reduction="none").sum(-1)
            loss = loss + self.weight * kl[keep].mean()
        return SimpleNamespace(loss=loss)


def out_of_domain_batches(inputs, skill: str, batch_size: int, rng: random.Random) -> Callable[[], Batch]:
    """Return a sampler of the other skill's question prompts (no answers) or general-text windows."""
    prompts = [(prompt, []) for prompt, _ in inputs.qa[OTHER_QA[skill]]]
    pad = inputs.tokenizer.pad_token_id
    return mixed_batches(
        [
            qa_batches(prompts, batch_size, pad, rng),
            packed_batches(inputs.streams["general"], build.BLOCK_SIZE, batch_size, rng),
        ],
        rng,
    )


def restrict_training(model: LlamaForCausalLM, variant: Variant, probe: Callable[[], Batch]) -> None:
    """Freeze the embeddings, norms and head, and/or mask every gradient to the top weights at the base."""
    if variant.frozen:
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith(("embed_tokens.weight", "lm_head.weight")):
                parameter.requires_grad_(False)
    if variant.sparse_fraction is None:
        return
    trainable = [p for p in model.parameters() if p.requires_grad]
    magnitude = [torch.zeros_like(p) for p in trainable]
    for _ in range(SPARSE_PROBE_BATCHES):
        input_ids, labels = probe()
        model.zero_grad(set_to_none=True)
        model(input_ids=input_ids, labels=labels).loss.backward()
        for total, p in zip(magnitude, trainable, strict=True):
            total += p.grad.abs()
    model.zero_grad(set_to_none=True)
    flat = torch.cat([m.flatten() for m in magnitude])
    threshold = torch.topk(flat, int(variant.sparse_fraction * flat.numel())).values[-1]
    for total, p in zip(magnitude, trainable, strict=True):
        mask = (total >= threshold).float()  # AdamW without decay leaves zero-gradient entries as they are
        p.register_hook(lambda grad, mask=mask: grad * mask)


def trainable_copy(base: LlamaForCausalLM) -> LlamaForCausalLM:
    """Return a copy of `base` to train (seeded, eager attention as the zoo's build trains)."""
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(base.config)
    model.set_attn_implementation("eager")
    model.load_state_dict(base.state_dict())
    return model


def frozen(path: str | Path) -> LlamaForCausalLM:
    """Return the model at `path` in eval mode with no trainable parameters (a reference, never trained)."""
    model = LlamaForCausalLM.from_pretrained(path).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def fine_tune(skill: str, variant: Variant, base: LlamaForCausalLM, inputs) -> LlamaForCausalLM:
    """Return the `skill` parent trained from `base` by the zoo's stages as `variant` changes them."""
    model = trainable_copy(base)
    if variant.lora_rank:
        model = with_lora(model, variant.lora_rank)
    rng = random.Random(f"{skill}-{SEED}")  # the zoo's data order for this parent
    kl_rng = random.Random(f"{skill}-kl-{SEED}")
    own = SKILLS[skill][1:] if variant.shared_cpt and skill == "arith" else SKILLS[skill]  # the base had the CPT
    stages = [dataclasses.replace(s, steps=round(s.steps * variant.steps), lr=s.lr * variant.lr) for s in own]
    restrict_training(model, variant, inputs.batches(stages[-1], random.Random(f"{skill}-probe-{SEED}")))
    wrapped = KLToBase(
        model, base, out_of_domain_batches(inputs, skill, 32, kl_rng), variant.kl_weight, inputs.tokenizer.pad_token_id
    )
    dev_items = inputs.data.dev_sets[skill]
    log = lambda msg: print(f"  {skill}: {msg}", flush=True)  # noqa: E731
    for number, stage in enumerate(stages, start=1):
        dev = (
            (lambda w: exact_match(w.model, inputs.tokenizer, dev_items, build.MAX_GEN_TOKS))
            if number == len(stages)
            else None
        )
        train(wrapped, inputs.batches(stage, rng), stage, log, dev=dev, dev_every=build.DEV_EVERY)
    return (model.merge_and_unload() if variant.lora_rank else model).eval()


def with_lora(model: LlamaForCausalLM, rank: int):
    """Return `model` with trainable LoRA adapters of `rank` on every linear layer and everything else frozen."""
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    )


def merged(config: dict, model_config: LlamaConfig) -> LlamaForCausalLM:
    """Return the mergekit merge of `config` as a model (in memory, through mergescope.merging.merge)."""
    config = {**config, "dtype": "float32"}
    candidate = Candidate(
        id=config_id(config, None), method=config["merge_method"], label="retention", mergekit_config=config
    )
    model = LlamaForCausalLM(model_config)
    model.load_state_dict({k: v.clone() for k, v in merge_in_memory(candidate).items()})
    return model.eval()


def merges(paths: dict[str, str], base_path: str) -> dict[str, dict]:
    """Return the mergekit configs measured for each recipe."""
    arith, facts = paths["arith"], paths["facts"]

    def half(m: str) -> dict:
        return {
            "merge_method": "linear",
            "models": [
                {"model": base_path, "parameters": {"weight": 0.5}},
                {"model": m, "parameters": {"weight": 0.5}},
            ],
        }

    return {
        "linear": {
            "merge_method": "linear",
            "models": [
                {"model": arith, "parameters": {"weight": 0.5}},
                {"model": facts, "parameters": {"weight": 0.5}},
            ],
        },
        "slerp": {
            "merge_method": "slerp",
            "base_model": arith,
            "models": [{"model": arith}, {"model": facts}],
            "parameters": {"t": 0.5},
        },
        "half_arith": half(arith),
        "half_facts": half(facts),
        "ta1": {
            "merge_method": "task_arithmetic",
            "base_model": base_path,
            "models": [
                {"model": arith, "parameters": {"weight": 1.0}},
                {"model": facts, "parameters": {"weight": 1.0}},
            ],
        },
    }


def task_vector(model: LlamaForCausalLM, base: LlamaForCausalLM) -> torch.Tensor:
    """Return parent - base, all weights flattened (float64)."""
    start = base.state_dict()
    return torch.cat([(v.double() - start[k].double()).flatten() for k, v in model.state_dict().items()])


def format_items(data: corpus.ZooData, n: int = 2000) -> list[corpus.QAItem]:
    """Return generic questions about general-text sentences: the last word of each, asked in the zoo's format."""
    sentences = [f"{s.strip()} ." for doc in data.general_docs for s in doc.split(" .") if len(s.split()) > 2]
    items = []
    for sentence in sentences[:n]:
        *words, last, _ = sentence.split()
        items.append(corpus.QAItem(question=f"what is the last word of: {' '.join(words)} {last}?", answer=last))
    return items


def chat_base(base: LlamaForCausalLM, inputs, out_dir: Path) -> Path:
    """Return the path of the zoo's base instruct-tuned on generic questions (trained once per OUT_DIR)."""
    path = out_dir / "format_base"
    if not (path / "config.json").is_file():
        model = trainable_copy(base)
        log = lambda msg: print(f"  format base: {msg}", flush=True)  # noqa: E731
        train(model, inputs.batches(FORMAT_TUNING, random.Random(f"format-{SEED}")), FORMAT_TUNING, log)
        build._save_model(model.eval(), inputs.tokenizer, path)
    return path


def shared_cpt_base(base: LlamaForCausalLM, inputs, path: Path, steps: int) -> Path:
    """Return the path of `base` after `steps` of arith's continued pre-training (trained once per path)."""
    if not (path / "config.json").is_file():
        model = trainable_copy(base)
        stage = dataclasses.replace(build.ARITH[0], steps=steps)
        log = lambda msg: print(f"  shared CPT base: {msg}", flush=True)  # noqa: E731
        train(model, inputs.batches(stage, random.Random(f"arith-{SEED}")), stage, log)
        build._save_model(model.eval(), inputs.tokenizer, path)
    return path


def run_recipe(name: str, zoo_dir: Path, out_dir: Path, base: LlamaForCausalLM, inputs) -> dict:
    """Train (or take) the recipe's two parents, merge them, and return its row."""
    started = time.perf_counter()
    variant, base_path = VARIANTS[name], str(zoo_dir / "models" / "base")
    if variant.format_base:
        base_path = str(chat_base(base, inputs, out_dir))
        base = frozen(base_path)
    if variant.shared_cpt:
        base_path = str(shared_cpt_base(base, inputs, out_dir / name / "base", variant.shared_cpt))
        base = frozen(base_path)
    paths = {}
    for skill in SKILLS:
        if variant.from_zoo:
            paths[skill] = str(zoo_dir / "models" / skill)
            continue
        paths[skill] = str(out_dir / name / skill)
        build._save_model(fine_tune(skill, variant, base, inputs), inputs.tokenizer, Path(paths[skill]))
    parents = {skill: LlamaForCausalLM.from_pretrained(path).eval() for skill, path in paths.items()}

    def score(model, skill: str) -> float:
        return round(exact_match(model, inputs.tokenizer, inputs.data.dev_sets[skill], build.MAX_GEN_TOKS), 4)

    row: dict = {
        "recipe": name,
        "hidden": base.config.hidden_size,
        "variant": dataclasses.asdict(variant),
        "base": {t: score(base, t) for t in SKILLS},
        "parents": {s: {t: score(m, t) for t in SKILLS} for s, m in parents.items()},
    }
    for label, config in merges(paths, base_path).items():
        row[label] = {t: score(merged(config, base.config), t) for t in SKILLS}
    vectors = {s: task_vector(m, base) for s, m in parents.items()}
    base_norm = float(torch.cat([v.double().flatten() for v in base.state_dict().values()]).norm())
    row["norm_ratio"] = {s: round(float(v.norm()) / base_norm, 4) for s, v in vectors.items()}
    row["cosine"] = round(float(F.cosine_similarity(vectors["arith"], vectors["facts"], dim=0)), 4)
    row["retention"] = {
        m: {s: round(row[m][s] / max(row["parents"][s][s], 1e-9), 3) for s in SKILLS} for m in ("linear", "slerp")
    }
    row["wall_s"] = round(time.perf_counter() - started, 1)
    return row


def markdown(row: dict) -> str:
    """Return the row as a line of the docs/research/zoo_recipes.md table."""
    own = lambda key: " / ".join(f"{row[key][s]:.3f}" for s in SKILLS)  # noqa: E731
    kept = lambda m: " / ".join(f"{row['retention'][m][s]:.0%}" for s in SKILLS)  # noqa: E731
    return (
        f"| {row['recipe']} | {row['parents']['arith']['arith']:.3f} / {row['parents']['facts']['facts']:.3f} "
        f"| {own('linear')} ({kept('linear')}) | {own('slerp')} ({kept('slerp')}) "
        f"| {row['half_arith']['arith']:.3f} / {row['half_facts']['facts']:.3f} | {own('ta1')} "
        f"| {row['norm_ratio']['arith']:.1%} / {row['norm_ratio']['facts']:.1%} | {row['cosine']:.3f} "
        f"| {row['wall_s']:.0f} |"
    )


def main(zoo_dir: Path, out_dir: Path, names: list[str]) -> None:
    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "rows.jsonl"
    done = {json.loads(line)["recipe"] for line in rows_path.read_text().splitlines()} if rows_path.exists() else set()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(zoo_dir / "models" / "base")
    inputs = build._Inputs.of(corpus.generate(SEED), tokenizer)
    inputs.qa["format_qa"] = build.qa_examples(tokenizer, format_items(inputs.data))
    base = frozen(zoo_dir / "models" / "base")
    for name in names or list(VARIANTS):
        if name in done:
            continue
        print(f"[{time.strftime('%H:%M:%S')}] {name}", flush=True)
        row = run_recipe(name, zoo_dir, out_dir, base, inputs)
        with rows_path.open("a") as rows:
            rows.write(json.dumps(row) + "\n")
        print(markdown(row), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
