"""How far plain lookup in the demonstrations goes on PushT's state track: a 1-nearest-neighbour policy.

At each replanning step it finds the demonstration frame whose observation (the T's eight corners and the pusher,
in pixels) is nearest and executes the next K actions of that demonstration. No learning, so it shows what the
demonstrations alone support and how much a trained policy adds. Evaluated on held-out seeds (those of `wam eval`).

    usage: python benchmarks/pusht_nearest_neighbour.py --data DATASET [--episodes 50] [--chunks 1 8]
           [--out results/pusht/nearest_neighbour.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from wam.data.collect import EVAL_SEED_BASE
from wam.data.lerobot import LeRobotDataset
from wam.envs import get_suite
from wam.eval.budget import machine_info
from wam.io import atomic_write_json

KEYS = ("observation.environment_state", "observation.state")


def run(dataset: LeRobotDataset, chunk: int, seeds: list[int]) -> dict:
    suite = get_suite("pusht")
    frames = dataset.frames
    points = np.concatenate([frames[k] for k in KEYS], axis=1).astype(np.float64)
    ends = {e["episode_index"]: e["dataset_to_index"] for e in dataset.episodes}
    env = suite.make_env("pusht", track="state")
    episodes = []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        done, best, steps = False, 0.0, 0
        while not done:
            query = np.concatenate([observation[k] for k in KEYS])
            i = int(np.argmin(((points - query) ** 2).sum(1)))
            for action in frames["action"][i:min(i + chunk, ends[int(frames["episode_index"][i])])]:
                observation, reward, success, truncated, _ = env.step(action)
                best, steps, done = max(best, reward), steps + 1, success or truncated
                if done:
                    break
        episodes.append({"seed": seed, "success": bool(success), "max_reward": best, "steps": steps})
    env.close()
    return {"chunk": chunk, "pc_success": 100 * float(np.mean([e["success"] for e in episodes])),
            "avg_max_reward": float(np.mean([e["max_reward"] for e in episodes])), "per_episode": episodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a PushT state-track dataset (wam collect)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--out", type=Path, default=Path("results/pusht/nearest_neighbour.json"))
    args = parser.parse_args()
    dataset = LeRobotDataset.load(args.data)
    seeds = [EVAL_SEED_BASE + i for i in range(args.episodes)]
    start = time.perf_counter()
    results = [run(dataset, chunk, seeds) for chunk in args.chunks]
    for r in results:
        print(f"1-NN, K={r['chunk']}: {r['pc_success']:.0f} % success, mean max reward {r['avg_max_reward']:.2f} "
              f"over {args.episodes} held-out episodes")
    atomic_write_json(args.out, {"data": str(args.data), "demonstrations": len(dataset.episodes),
                                 "frames": dataset.num_frames, "results": results,
                                 "time_s": time.perf_counter() - start, "machine": machine_info("cpu")})


if __name__ == "__main__":
    main()
