"""Whether a protocol bench's failures lie where its demonstrations did not go: success on the evaluation starts
near a training demonstration's start against those far from every one, beside the same split by a control set.

At 10 demonstrations per task the demonstrations cover the placement ranges sparsely. If a policy interpolates
between them, success falls with the distance from an evaluation start to the nearest demonstration start, and more
demonstrations (or whatever widens what each one covers) are the lever; if success is as low near them as far from
them, coverage is not what fails. For every evaluated episode in the bench's records, the start is the key object's
and the goal's position after the seeded reset (simulator ground truth, ``Suite.make_env(task).reset``), and its
distance is the Euclidean distance in metres, in those six coordinates, to the nearest start of the same task's
training demonstrations (their seeds are in the training dataset's episode table). Each task's starts are split at
that task's median distance, so every task weighs the same in the near and the far half.

Some starts are easier wherever the demonstrations lie (the middle of a range, say), and they are also nearer to
the demonstrations on average. The control measures that: the same split by the distance to as many starts per task
drawn at seeds no demonstration used (``CONTROL_SEED_BASE``). Coverage is what fails where the demonstrations'
split separates success and the control's does not. The row "all entries" pools the entries, which were evaluated
on the same starts: its interval treats correlated episodes as independent, so read the entries' own rows for what
is certain.

    python benchmarks/coverage.py --bench outputs/bench-10-demos --results results/bench-10-demos
                                  [--groups hard very-hard] [--out results/bench-10-demos/coverage.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from wam.data.lerobot import DatasetError, dataset_suite, read_episodes
from wam.envs import Suite, SuiteEnv, get_suite
from wam.envs.base import KEYPOINT_ROLES
from wam.eval.bench import recorded_episodes
from wam.io import atomic_write_json

PLACED = [KEYPOINT_ROLES.index("object"), KEYPOINT_ROLES.index("goal")]  # what a reset places
CONTROL_SEED_BASE = 90_000_000
"""Seeds of the control starts: above the held-out and synthetic ones, below the evaluation seeds."""
SPLITS = {"demonstrations": "the training demonstrations' starts", "control": "as many control starts"}


class Starts:
    """The placement after a seeded reset of a suite's tasks, one environment per task."""

    def __init__(self, suite: Suite):
        self.suite = suite
        self.envs: dict[str, SuiteEnv] = {}

    def __call__(self, task: str, seed: int) -> np.ndarray:
        """The key object's and the goal's positions after the reset at ``seed`` (6 numbers, metres)."""
        if task not in self.envs:
            self.envs[task] = self.suite.make_env(task, track="state")
        self.envs[task].reset(seed=seed)
        return self.envs[task].ground_truth()["keypoints_xyz"][PLACED].reshape(-1)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def demonstration_seeds(data: Path) -> dict[str, list[int]]:
    """Task -> the seeds of a training dataset's episodes."""
    seeds: dict[str, list[int]] = {}
    for episode in read_episodes(data):
        if "seed" not in episode:
            raise SystemExit(f"error: {data}'s episode table has no seeds (collected before wam recorded them)")
        (task,) = episode["tasks"]
        seeds.setdefault(task, []).append(int(episode["seed"]))
    return seeds


def outcome(episodes: list[dict]) -> dict:
    """Success with its 95 % Wilson interval and the failures by tag of some episodes."""
    wins = sum(e["success"] for e in episodes)
    interval = binomtest(wins, len(episodes)).proportion_ci(method="wilson")
    return {"episodes": len(episodes), "success": wins / len(episodes), "ci95": [interval.low, interval.high],
            "failures": dict(Counter(e["failure"] for e in episodes if not e["success"]))}


def near_halves(distance: dict[tuple[str, int], float]) -> tuple[set[tuple[str, int]], dict[str, float]]:
    """The (task, seed) starts at most their task's median distance away, and the medians."""
    tasks = sorted({t for t, _ in distance})
    median = {t: float(np.median([d for (u, _), d in distance.items() if u == t])) for t in tasks}
    return {k for k, d in distance.items() if d <= median[k[0]]}, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, required=True, help="the wam bench --out folder (its training data)")
    parser.add_argument("--results", type=Path, required=True, help="the wam bench --results folder (its records)")
    parser.add_argument("--groups", nargs="*", help="the groups to read (default: every recorded group)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()

    if not (args.results / "records").is_dir():
        parser.error(f"--results {args.results} holds no records/ (a wam bench --protocol --results folder)")
    groups = args.groups or sorted(p.name for p in (args.results / "records").iterdir() if p.is_dir())
    missing = [g for g in groups if not (args.results / "records" / g).is_dir()]
    if missing:
        parser.error(f"no records of group {', '.join(missing)} in {args.results}")
    rows, distances = [], {}
    for group in groups:
        datasets = sorted((args.bench / group).glob("**/data/meta/info.json"))
        if not datasets:
            parser.error(f"no training data of group {group} under {args.bench} (run its wam bench again to collect it)")
        seeds: dict[str, list[int]] = {}
        try:
            suite = get_suite(dataset_suite(json.loads(datasets[0].read_text()), datasets[0]))
            for info in datasets:  # one collection per group, or one per task
                seeds.update(demonstration_seeds(info.parent.parent))
        except (DatasetError, ValueError) as e:
            parser.error(f"{datasets[0].parent.parent}: {e}")
        starts = Starts(suite)
        references = {  # per task, the demonstrations' starts and as many control starts
            "demonstrations": {t: np.stack([starts(t, s) for s in ss]) for t, ss in seeds.items()},
            "control": {t: np.stack([starts(t, CONTROL_SEED_BASE + i) for i in range(len(ss))])
                        for t, ss in seeds.items()}}
        try:
            by_entry = recorded_episodes(args.results, group)
        except ValueError as e:
            parser.error(str(e))
        evaluated = {(e["task"], e["seed"]) for episodes in by_entry.values() for e in episodes}
        evaluation_starts = {k: starts(*k) for k in sorted(evaluated)}
        starts.close()
        entries = [*by_entry.items(), ("all entries", [e for v in by_entry.values() for e in v])]
        for split, reference in references.items():
            distance = {k: float(np.linalg.norm(reference[k[0]] - s, axis=1).min())
                        for k, s in evaluation_starts.items()}
            near, median = near_halves(distance)
            distances.setdefault(group, {})[split] = {t: {str(seed): d for (u, seed), d in distance.items() if u == t}
                                                      for t in median}
            print(f"\n{group}, split by the distance to the nearest of {SPLITS[split]} (median per task, cm: "
                  + ", ".join(f"{t.removesuffix('-v3')} {100 * m:.1f}" for t, m in median.items()) + ")")
            print("| entry | near: success [95 %] | far: success [95 %] | near: never-reached | far: never-reached |")
            print("|---|---|---|---|---|")
            for entry, episodes in entries:
                halves = {name: outcome([e for e in episodes if ((e["task"], e["seed"]) in near) == is_near])
                          for name, is_near in (("near", True), ("far", False))}
                rows.append({"group": group, "split": split, "entry": entry, **halves, "median_distance_m": median})
                cells = [f"{100 * h['success']:.1f} [{100 * h['ci95'][0]:.0f}-{100 * h['ci95'][1]:.0f}]"
                         for h in halves.values()]
                cells += [str(h["failures"].get("never-reached", 0)) for h in halves.values()]
                print(f"| {entry} | " + " | ".join(cells) + " |")
    if args.out:
        atomic_write_json(args.out, {"control_seed_base": CONTROL_SEED_BASE, "rows": rows,
                                     "distances_m": distances})  # group -> split -> task -> evaluation seed -> metres


if __name__ == "__main__":
    main()
