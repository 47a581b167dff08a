"""Run provenance for stores that tests write by hand (through the store API, without a sweep)."""

from __future__ import annotations

from mergescope.runs.directory import RunMeta


def run_meta(parents: list[str], **changes) -> RunMeta:
    """The provenance a zoo sweep of `parents` writes, less the machine-dependent fields; `changes` replace fields."""
    fields = dict(
        spec={"name": "default"},
        spec_source=None,
        parents=tuple(parents),
        parent_names=tuple(p.rstrip("/").rsplit("/", 1)[-1] for p in parents),
        base=None,
        architecture="LlamaForCausalLM",
        tasks=("zoo_arith",),
        limit=None,
        backend="hf",
        versions={"mergescope": "0"},
        machine="test",
        updated_at="2026-12-02T00:00:00+00:00",
    )
    return RunMeta(**{**fields, **changes})
