"""Benchmark: how many evaluations a search needs to reach the best selection-half objective of the full grid.

The space is TIES over the zoo's arith x facts pair (with their base): density in {0.25, 0.5, 0.75, 1} and each
parent's weight in {0.25, 0.5, ..., 1.25}, a 100-point grid. The grid is swept once (`mergescope sweep` over
the same points written as a sweep spec) and each point's selection-half objective read back; then each
sampler (tpe, cmaes, random) searches the same space for a third of the grid's points with seeds 0..4, each
search in a copy of the grid's store. Every point a search proposes is already scored there, so the searches
cost no merge and see exactly the grid's scores (the benchmark checks that no search evaluated anything).
Evaluations-to-grid-best: the 1-based number of the first trial whose objective reaches the grid's best; a
search that never does within its budget counts as budget + 1 ("not reached").

Then the cost of cheap fitness: one TPE search of the shipped space_lu2024 (seed 0, FITNESS_BUDGET trials) in a
fresh run with every trial evaluated on every item, and the same search with `--fitness-items K` (trials
evaluated on K items per task, FITNESS_FINALISTS finalists then on every item): wall and CPU seconds of each,
reference models included, and their ratios.

    python benchmarks/search_bench.py [ZOO_DIR] [--limit N] [--fitness-items K]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_pair import BenchPair, zoo_pair

DENSITIES = [0.25, 0.5, 0.75, 1.0]
WEIGHTS = [0.25, 0.5, 0.75, 1.0, 1.25]
SPACE = {
    "name": "bench_ties",
    "space": [
        {
            "method": "ties",
            "parameters": {"density": {"low": 0.25, "high": 1, "step": 0.25}},
            "per_parent": [{"weight": {"low": 0.25, "high": 1.25, "step": 0.25}}] * 2,
        }
    ],
}
GRID = {
    "name": "bench_ties",
    "methods": [
        {
            "method": "ties",
            "parameters": {"density": {"grid": DENSITIES}},
            "per_parent": [{"weight": {"grid": WEIGHTS}}] * 2,
        }
    ],
}
SAMPLERS = ("tpe", "cmaes", "random")
SEEDS = range(5)
FITNESS_BUDGET, FITNESS_FINALISTS = 6, 2


def _settings(pair: BenchPair, out: Path, limit: int):
    from mergescope.recipes.sweep import SweepSettings

    return SweepSettings(
        parents=[str(parent) for parent in pair.parents],
        base=str(pair.base),  # no tasks: the sweep takes the zoo's own
        out=out,
        backend="hf",
        limit=limit,
        progress=False,
    )


def _grid_objectives(grid_run: Path, space: Path, pair: BenchPair, limit: int) -> dict[str, float]:
    """Each grid point's objective as the search computes it: a one-trial search in a copy reads the items."""
    from mergescope.recipes.search import SearchSettings, plan_search
    from mergescope.recipes.search_fitness import fitness_items, task_objectives
    from mergescope.runs.store import ResultsStore

    plan = plan_search(SearchSettings(run=_settings(pair, grid_run, limit), space=space, budget=1))
    store = ResultsStore.of_run(grid_run)
    try:
        fitness = fitness_items(store, plan.run.subjects[0].id, plan.run.suite.names, plan.meta)
        ids = [row["id"] for row in store.query("SELECT id FROM subjects WHERE kind = 'candidate'")]
        return {i: statistics.mean(task_objectives(store, i, fitness).values()) for i in ids}
    finally:
        store.close()


def _search_copy(grid_run: Path, out: Path) -> None:
    """A copy of the grid's store (its merges are not needed: every point is scored)."""
    out.mkdir(parents=True)
    shutil.copy(grid_run / "results.sqlite", out / "results.sqlite")


def _evaluations_to(best: float, run: Path, budget: int) -> tuple[int, int | None]:
    """Trials, and distinct merges (a repeated point costs nothing), up to the first that reaches `best`;
    (budget + 1, None) when none does."""
    db = sqlite3.connect(run / "results.sqlite")
    try:
        trials = db.execute("SELECT subject_id, objective FROM search_trials ORDER BY number").fetchall()
    finally:
        db.close()
    merged: set[str] = set()
    for number, (subject_id, objective) in enumerate(trials):
        merged.add(subject_id)
        if objective >= best - 1e-12:
            return number + 1, len(merged)
    return budget + 1, None


def fitness_cost(pair: BenchPair, limit: int | None, fitness_items: int) -> dict:
    """Wall and CPU seconds of a search evaluating every trial on every item, and of the same search with a fitness
    subset of `fitness_items` per task, each in a fresh run; and their ratios (subset / every item)."""
    from mergescope.merging.spec import SWEEPS_DIR
    from mergescope.recipes.search import SearchSettings, search

    costs = {}
    with tempfile.TemporaryDirectory(prefix="fitness-bench-") as scratch:
        for name, options in (
            ("every_item", {}),
            ("fitness_subset", {"fitness_items": fitness_items, "finalists": FITNESS_FINALISTS}),
        ):
            wall, cpu = time.perf_counter(), time.process_time()
            search(
                SearchSettings(
                    run=_settings(pair, Path(scratch) / name, limit),
                    space=SWEEPS_DIR / "space_lu2024.yaml",
                    budget=FITNESS_BUDGET,
                    seed=0,
                    **options,
                )
            )
            costs[name] = {
                "wall_seconds": round(time.perf_counter() - wall, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
            }
    return {
        "budget": FITNESS_BUDGET,
        "fitness_items": fitness_items,
        "finalists": FITNESS_FINALISTS,
        **costs,
        **{
            f"{kind}_ratio": round(
                costs["fitness_subset"][f"{kind}_seconds"] / costs["every_item"][f"{kind}_seconds"], 2
            )
            for kind in ("wall", "cpu")
        },
    }


def run(pair: BenchPair, limit: int | None = None, fitness_items: int = 10) -> dict:
    """Evaluations-to-grid-best per sampler (median and every seed), the grid's size and best, and timings."""
    from mergescope.recipes.search import SearchSettings, search
    from mergescope.recipes.sweep import sweep

    with tempfile.TemporaryDirectory(prefix="search-bench-") as scratch:
        scratch = Path(scratch)
        (scratch / "space.yaml").write_text(yaml.safe_dump(SPACE))
        (scratch / "grid.yaml").write_text(yaml.safe_dump(GRID))
        started = time.perf_counter()
        grid = sweep(dataclasses.replace(_settings(pair, scratch / "grid", limit), sweep=scratch / "grid.yaml"))
        grid_seconds = time.perf_counter() - started
        objectives = _grid_objectives(grid.run_dir, scratch / "space.yaml", pair, limit)
        best = max(objectives.values())
        budget = math.ceil(len(objectives) / 3)
        results = {}
        for sampler in SAMPLERS:
            counts, distinct, evaluated, seconds = [], [], 0, 0.0
            for seed in SEEDS:
                out = scratch / f"{sampler}-{seed}"
                _search_copy(grid.run_dir, out)
                settings = _settings(pair, out, limit)
                result = search(
                    SearchSettings(
                        run=settings, space=scratch / "space.yaml", budget=budget, sampler=sampler, seed=seed
                    )
                )
                trials, merges = _evaluations_to(best, out, budget)
                counts.append(trials)
                distinct.append(merges)
                evaluated += result.n_evaluated
                seconds += result.seconds
            results[sampler] = {
                "evaluations_to_grid_best": counts,
                "median": statistics.median(counts),
                "distinct_merges_to_grid_best": distinct,  # None: not reached
                "reached_within_a_third": statistics.median(counts) <= budget,
                "new_evaluations": evaluated,
                "search_seconds": round(seconds, 1),
            }
    return {
        "grid_points": len(objectives),
        "grid_best_objective": best,
        "grid_points_at_best": sum(v >= best - 1e-12 for v in objectives.values()),
        "budget": budget,
        "limit_items_per_task": limit,
        "grid_sweep_seconds": round(grid_seconds, 1),
        "samplers": results,
        "fitness_cost": fitness_cost(pair, limit, fitness_items),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("zoo", nargs="?", default=".cache/zoo128")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    parser.add_argument("--fitness-items", type=int, default=10, help="the fitness subset's items per task")
    arguments = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from mergescope.zoo import load_zoo

    print(json.dumps(run(zoo_pair(load_zoo(Path(arguments.zoo))), arguments.limit, arguments.fitness_items), indent=1))


if __name__ == "__main__":
    main()
