"""Tests of the zoo: manifest, loadable models, held-out data, determinism, and the lm-eval quality bar."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from mergescope.zoo import ZooManifest, corpus, load_zoo

MODEL_ROLES = {"base": "base", "stranger": "stranger", "facts": "parent", "arith": "parent", "knowledge": "parent"}
TASKS = {"zoo_arith": "arith", "zoo_facts": "facts", "zoo_domain": "domain", "zoo_composite": "composite"}


def test_manifest_lists_every_model_and_task(zoo: ZooManifest) -> None:
    assert {m.name: m.role for m in zoo.models} == MODEL_ROLES
    assert {t.name: t.domain for t in zoo.tasks} == TASKS
    assert zoo.base().name == "base" and zoo.stranger().name == "stranger"
    assert [p.name for p in zoo.parents()] == ["arith", "facts", "knowledge"]
    # The test zoo holds the pairs its models make; the demo's full zoo adds the twins and across-lineage pairs.
    assert [p.name for p in zoo.pairs] == ["skills", "knowledge_instruct"]
    assert {m for pair in zoo.pairs for m in pair.parents} <= set(MODEL_ROLES)
    assert all(set(pair.tasks) <= set(TASKS) for pair in zoo.pairs)
    for model in zoo.models:
        assert (zoo.model_path(model.name) / "model.safetensors").is_file()
        assert not list(zoo.model_path(model.name).glob("*.bin")), "weights must be safetensors only"
    assert load_zoo(zoo.root) == zoo


def test_task_files_point_at_their_items(zoo: ZooManifest) -> None:
    for task in zoo.tasks:
        spec = yaml.safe_load((zoo.root / task.yaml).read_text())
        data_path = Path(spec["dataset_kwargs"]["data_files"]["test"])
        assert spec["task"] == task.name and data_path.is_absolute()
        assert data_path == zoo.task_data_path(task.name)
        assert len(data_path.read_text().splitlines()) == task.n_items
        assert 100 <= task.n_items <= 200
        assert (zoo.task_yaml_dir() / f"{task.name}.yaml").is_file()


def test_unknown_names_and_missing_zoo_are_clear_errors(zoo: ZooManifest, tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="known: base"):
        zoo.model_path("arithmetic")
    with pytest.raises(FileNotFoundError, match="zoo build"):
        load_zoo(tmp_path)


def test_every_model_loads_offline_with_one_architecture(zoo: ZooManifest) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    configs = []
    for model in zoo.models:
        loaded = AutoModelForCausalLM.from_pretrained(zoo.model_path(model.name))
        tokenizer = AutoTokenizer.from_pretrained(zoo.model_path(model.name))
        assert type(loaded).__name__ == "LlamaForCausalLM"
        assert None not in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
        assert loaded.config.head_dim == 32 and not loaded.config.tie_word_embeddings
        configs.append(loaded.config.to_diff_dict())
    assert all(c == configs[0] for c in configs)


def _sha256_of_items(items: list[corpus.QAItem]) -> str:
    """The digest of items written the way the zoo writes its JSONL files."""
    text = "".join(json.dumps({"question": i.question, "answer": i.answer}) + "\n" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()


def test_data_generation_is_repeatable_and_matches_the_zoo(zoo: ZooManifest) -> None:
    first, again, other = corpus.generate(zoo.seed), corpus.generate(zoo.seed), corpus.generate(zoo.seed + 1)
    assert first.fingerprint() == again.fingerprint() == zoo.data_fingerprint
    assert other.fingerprint() != first.fingerprint()
    for task in zoo.tasks:
        on_disk = hashlib.sha256(zoo.task_data_path(task.name).read_bytes()).hexdigest()
        assert on_disk == _sha256_of_items(first.eval_sets[task.domain])


def test_evaluation_and_dev_items_are_held_out() -> None:
    data = corpus.generate(0)
    arith_trained = {i.question for i in data.arith_train}
    arith_stated = f" {' '.join(data.arith_docs)} "
    for item in data.eval_sets["arith"] + data.dev_sets["arith"]:
        a, op, k = item.question.removeprefix("What is ").removesuffix("?").split()
        assert item.question not in arith_trained
        assert f" {a} {op} {k} " not in arith_stated
    assert not {i.question for i in data.eval_sets["arith"]} & {i.question for i in data.dev_sets["arith"]}
    facts_trained = {i.question for i in data.facts_train}
    for task in ("facts", "domain", "composite"):
        assert not facts_trained & {i.question for i in data.eval_sets[task]}
    assert not facts_trained & {i.question for i in data.dev_sets["facts"]}


def test_the_domain_is_read_only_by_the_knowledge_parent() -> None:
    data = corpus.generate(0)
    domain_words = set(data.domain_words())
    base_and_instruct_text = " ".join(
        data.general_docs
        + data.world_docs
        + data.arith_docs
        + [f"{i.question} {i.answer}" for i in data.facts_train + data.arith_train]
    )
    assert not domain_words & set(base_and_instruct_text.replace(".", " ").replace("?", " ").split())
    assert all(any(land.name in item.question for land in data.domain) for item in data.eval_sets["domain"])
    assert all(land.name in " ".join(data.domain_docs) for land in data.domain)


def test_names_are_whole_tokens(zoo: ZooManifest) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(zoo.model_path("base"))
    land = corpus.generate(zoo.seed).domain[0]
    tokens = tokenizer.tokenize(f"Q: What is the capital of {land.name}?\nA: {land.capital}\n")
    assert land.name in tokens and land.capital in tokens


def _exact_match(zoo: ZooManifest, model_name: str, tasks: list[str]) -> dict[str, float]:
    """Greedy exact match of one zoo model on `tasks`, through lm-eval in process."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = zoo.model_path(model_name)
    lm = HFLM(
        pretrained=AutoModelForCausalLM.from_pretrained(path),
        tokenizer=AutoTokenizer.from_pretrained(path),
        device="cpu",
        batch_size=64,
    )
    manager = TaskManager(include_path=str(zoo.task_yaml_dir()), include_defaults=False)
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager, bootstrap_iters=0, log_samples=False)
    return {task: results["results"][task]["exact_match,strip"] for task in tasks}


def test_each_parent_masters_its_own_task_and_only_it(zoo: ZooManifest) -> None:
    """lm-eval's scores hold the bars the build checked, and equal the scores in zoo.json (the build scores the
    saved models through the sweep's hf backend: one scoring path, whatever the CPU's float rounding)."""
    tasks = ["zoo_arith", "zoo_facts", "zoo_domain"]
    scores = {name: _exact_match(zoo, name, tasks) for name in ("base", "facts", "arith", "knowledge")}
    assert scores["facts"]["zoo_facts"] >= 0.85 and scores["arith"]["zoo_arith"] >= 0.85, scores
    assert max(scores["base"].values()) <= 0.2, scores
    assert scores["facts"]["zoo_arith"] <= 0.2 and scores["arith"]["zoo_facts"] <= 0.2, scores
    # The emergence pair's ingredients: neither parent answers the domain's questions.
    assert scores["facts"]["zoo_domain"] <= 0.2 and scores["knowledge"]["zoo_domain"] <= 0.2, scores
    assert (
        zoo.model("knowledge").scores["domain_knowledge"] >= 0.85 > 0.5 >= zoo.model("base").scores["domain_knowledge"]
    )
    for name, by_task in scores.items():
        for task, score in by_task.items():
            assert score == pytest.approx(zoo.model(name).scores[task], abs=1e-4), (name, task)  # zoo.json rounds to 4


def test_manifest_records_scores_and_task_vector_norms(zoo: ZooManifest) -> None:
    for model in zoo.models:
        assert set(model.scores) == {*TASKS, "domain_knowledge"}
        assert (model.task_vector_norm is None) == (model.role != "parent")
    assert 0 < zoo.model("facts").task_vector_norm < 1


def test_manifest_records_the_step_each_stage_kept(zoo: ZooManifest) -> None:
    for model in zoo.models:
        stages = model.recipe["stages"]
        assert [t.stage for t in model.trained] == [stage["name"] for stage in stages]
        for trained, stage in zip(model.trained, stages, strict=True):
            assert 0 < trained.kept_step <= stage["steps"] and trained.tail_loss > 0
    # A dev split picks the last stage's checkpoint of arith and facts, among those taken every 100 steps.
    for name in ("arith", "facts"):
        last = zoo.model(name).trained[-1]
        assert last.dev_score is not None and last.kept_step % 100 == 0
    assert zoo.model("knowledge").trained[-1].dev_score is None


def test_a_cached_zoo_of_another_recipe_is_rebuilt(zoo: ZooManifest, tmp_path: Path, monkeypatch) -> None:
    from mergescope.zoo import build

    models, width = build.TEST_MODELS, build.SMALL_WIDTH
    assert zoo.width == width
    assert build.recipe_key(zoo.seed, models, width=width) == zoo.recipe_key
    # Another seed, the demo's full zoo and the large width are each cached under a key of their own.
    others = [
        build.recipe_key(zoo.seed + 1, models, width=width),
        build.recipe_key(zoo.seed, width=width),
        build.recipe_key(zoo.seed, models, width=build.LARGE_WIDTH),
    ]
    assert zoo.recipe_key not in others and len(set(others)) == 3
    assert build.ensure_zoo(zoo.root, seed=zoo.seed, progress=False, models=models, width=width) == zoo  # reused
    stale = tmp_path / "zoo"
    stale.mkdir()
    (stale / "zoo.json").write_text(zoo.model_copy(update={"recipe_key": "older"}).model_dump_json())
    built = []
    monkeypatch.setattr(build, "build_zoo", lambda root, seed, progress, models, width: built.append(root) or zoo)
    assert build.ensure_zoo(stale, seed=zoo.seed, progress=False, models=models, width=width) == zoo
    assert built == [stale] and not (stale / "zoo.json").exists()


def test_the_demo_zoo_of_the_same_width_holds_the_same_weights(zoo: ZooManifest) -> None:
    """The test zoo and the demo's 64-wide zoo (once `make demo` built it) train their shared models alike."""
    demo_root = Path(__file__).resolve().parents[2] / ".cache" / "zoo64"
    if not (demo_root / "zoo.json").is_file():
        pytest.skip("the demo's 64-wide zoo is not built here (make demo builds it)")
    demo = load_zoo(demo_root)
    if demo.cpu_capability != zoo.cpu_capability:
        pytest.skip(
            f"the demo's zoo was trained with {demo.cpu_capability} kernels, this run's with {zoo.cpu_capability}"
        )
    assert (demo.width, demo.seed) == (zoo.width, zoo.seed)
    for model in zoo.models:
        digests = {
            hashlib.sha256((z.model_path(model.name) / "model.safetensors").read_bytes()).hexdigest()
            for z in (zoo, demo)
        }
        assert len(digests) == 1, model.name


def test_a_width_the_heads_cannot_split_is_refused_before_any_work(tmp_path: Path) -> None:
    from mergescope.errors import ConfigError
    from mergescope.zoo import build_zoo

    with pytest.raises(ConfigError, match="zoo width 50 is not a positive multiple of the heads' width 32"):
        build_zoo(tmp_path / "zoo", width=50)
    assert not (tmp_path / "zoo").exists()


def test_a_model_below_its_bar_stops_the_build_with_one_line() -> None:
    from mergescope.zoo.quality import QualityBar, ZooQualityError

    with pytest.raises(ZooQualityError) as caught:
        QualityBar("facts", "zoo_facts", minimum=0.85).check(0.667)
    assert "\n" not in caught.value.one_line()
    assert "zoo model facts scores 0.667 on zoo_facts, below its bar 0.85" in caught.value.one_line()
    QualityBar("base", "zoo_facts", maximum=0.2).check(0.2)
