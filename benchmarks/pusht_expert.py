"""PushT's scripted expert from gym-pusht's seeded starts, through the suite's adapter as `wam collect` runs it.

Reports success (coverage of the goal above 0.95 within the 300-step cap), the mean over episodes of the maximum
reward ``min(coverage / 0.95, 1)`` (the coverage figure of Diffusion Policy and LeRobot), the mean maximum raw
coverage, episode length and time per expert call. Writes ``OUT/expert.json`` (every start's outcome).
    usage: python benchmarks/pusht_expert.py [--starts 100] [--track state|vision] [--out results/pusht]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from wam.envs.pusht import expert_outcomes
from wam.eval.budget import machine_info
from wam.io import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=100)
    parser.add_argument("--track", choices=("state", "vision"), default="state")
    parser.add_argument("--out", type=Path, default=Path("results/pusht"))
    args = parser.parse_args()
    start = time.perf_counter()
    outcomes = expert_outcomes(list(range(args.starts)), track=args.track)
    wall = time.perf_counter() - start
    steps = sum(o["steps"] for o in outcomes)
    summary = {
        "starts": args.starts, "track": args.track,
        "successes": sum(o["success"] for o in outcomes),
        "mean_max_reward": float(np.mean([o["max_reward"] for o in outcomes])),
        "mean_max_coverage": float(np.mean([o["max_coverage"] for o in outcomes])),
        "mean_steps": float(np.mean([o["steps"] for o in outcomes])),
        "max_steps": max(o["steps"] for o in outcomes),
        "ms_per_step": 1e3 * wall / steps,
        "machine": machine_info("cpu"), "per_start": outcomes,
    }
    atomic_write_json(args.out / "expert.json", summary)
    print(f"PushT expert, {args.track} track: {summary['successes']}/{args.starts} successes, mean max reward "
          f"{summary['mean_max_reward']:.3f}, mean max coverage {summary['mean_max_coverage']:.3f}, "
          f"{summary['mean_steps']:.1f} steps per episode (at most {summary['max_steps']}), "
          f"{summary['ms_per_step']:.1f} ms per step (expert and simulator); wrote {args.out / 'expert.json'}")


if __name__ == "__main__":
    main()
