"""MetaWorld's scripted experts through our adapter beside MetaWorld's own environment, on every task.

For each task the expert runs from ``--starts`` seeded starts three ways: through ``MetaWorldEnv`` on the state
track and on the vision track (seeds 0..starts-1, first attempt, as `wam collect` runs it), and through MetaWorld's
own ``gym.make("Meta-World/MT1", env_name=task, seed=0)`` (its first ``--starts`` resets). A task whose adapter
success differs from MetaWorld's by more than noise (two-sided Fisher exact test, p < 0.05) is flagged.

Writes ``SCRATCH/<task>.json`` as each task finishes (a re-run skips finished tasks), then ``OUT/experts.json``
(every start's outcome) and ``OUT/experts.md`` (the table), and exits with 1 when a task is flagged.
    usage: python benchmarks/experts.py [--starts 20] [--tasks reach-v3,...] [--out results/experts]
                                        [--scratch outputs/experts] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
import warnings
from pathlib import Path

from scipy.stats import fisher_exact
from tqdm import tqdm

from wam.envs.metaworld import MetaWorldSuite, reference_expert_successes, task_names
from wam.eval.budget import machine_info
from wam.io import atomic_write_bytes, atomic_write_json

WAYS = ("metaworld", "state", "vision")
NOISE_P = 0.05


def run_task(job: tuple[str, int, str]) -> dict:
    task, starts, out = job
    warnings.filterwarnings("ignore", message="Constant.*may be too high")  # MetaWorld's experts, harmless
    start = time.perf_counter()
    outcomes = {"metaworld": reference_expert_successes(task, starts),
                "state": MetaWorldSuite().expert_successes(task, list(range(starts)), "state"),
                "vision": MetaWorldSuite().expert_successes(task, list(range(starts)), "vision")}
    row = {"task": task, "starts": starts, **{way: sum(o) for way, o in outcomes.items()},
           "outcomes": {way: [int(x) for x in o] for way, o in outcomes.items()},
           "time_s": round(time.perf_counter() - start, 1)}
    for track in ("state", "vision"):
        table = [[row[track], starts - row[track]], [row["metaworld"], starts - row["metaworld"]]]
        row[f"p_{track}"] = float(fisher_exact(table).pvalue)
    row["within_noise"] = min(row["p_state"], row["p_vision"]) >= NOISE_P
    atomic_write_json(Path(out) / f"{task}.json", row)
    return row


def markdown(rows: list[dict], starts: int) -> str:
    lines = [f"# MetaWorld's scripted experts: our adapter against MetaWorld's own environment ({starts} starts per "
             "task)", "",
             "Command: `python benchmarks/experts.py` (see its docstring). Successes out of "
             f"{starts} starts of the same scripted expert (`metaworld.policies`), 500-step cap, first attempt. "
             "*MetaWorld*: `gym.make(\"Meta-World/MT1\", env_name=task, seed=0)`, its first resets; *state*, "
             "*vision*: `MetaWorldEnv` on each track, seeds 0..N-1. p: two-sided Fisher exact test of the adapter "
             f"against MetaWorld; a task with p < {NOISE_P} on either track is flagged.", "",
             "| task | MetaWorld | state | vision | p (state) | p (vision) | within noise |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['metaworld']} | {r['state']} | {r['vision']} | {r['p_state']:.2f} | "
                     f"{r['p_vision']:.2f} | {'yes' if r['within_noise'] else '**no**'} |")
    total = {way: sum(r[way] for r in rows) for way in WAYS}
    n = starts * len(rows)
    lines += ["", f"All {len(rows)} tasks: MetaWorld {total['metaworld']}/{n}, state {total['state']}/{n}, "
              f"vision {total['vision']}/{n}; flagged: "
              f"{', '.join(r['task'] for r in rows if not r['within_noise']) or 'none'}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=20, help="seeded starts per task and way")
    parser.add_argument("--tasks", default="", help="comma-separated tasks (default: all 50)")
    parser.add_argument("--out", type=Path, default=Path("results/experts"), help="the table and its JSON")
    parser.add_argument("--scratch", type=Path, default=Path("outputs/experts"), help="finished tasks, for resuming")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.starts < 1 or args.workers < 1:
        parser.error("--starts and --workers must be at least 1")
    try:
        tasks = MetaWorldSuite().check_tasks([t for t in args.tasks.split(",") if t]) if args.tasks else task_names()
    except ValueError as e:
        parser.error(str(e))
    done = {}
    for task in tasks:
        path = args.scratch / f"{task}.json"
        if path.exists() and json.loads(path.read_text())["starts"] == args.starts:
            done[task] = json.loads(path.read_text())
    jobs = [(task, args.starts, str(args.scratch)) for task in tasks if task not in done]
    with mp.get_context("spawn").Pool(args.workers) as pool:  # spawn: each worker owns its EGL context
        for row in tqdm(pool.imap_unordered(run_task, jobs), total=len(tasks), initial=len(done), desc="experts"):
            done[row["task"]] = row
    rows = [done[task] for task in tasks]
    summary = {"starts": args.starts, "noise_p": NOISE_P, "machine": machine_info("cpu"),
               "flagged": [r["task"] for r in rows if not r["within_noise"]], "rows": rows}
    atomic_write_json(args.out / "experts.json", summary)
    table = markdown(rows, args.starts)
    atomic_write_bytes(args.out / "experts.md", table.encode())
    print(table)
    return 1 if summary["flagged"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
