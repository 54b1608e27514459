"""What the latent action model learns on real demonstrations: does its latent carry the action?

Fits the latent action model of the ``latent-actions`` curriculum (``wam.data.latent_actions``) on a labelled
dataset (plus any video), then reports the decoder's error with and without the latent and how much of the real,
normalized action chunks a least-squares linear map explains from (a) the latent, (b) the hand's observed
displacement over the chunk (``observation.state`` at ``t + H`` minus at ``t``: the reference a perfect latent of the
robot's motion would reach; the gripper command is not a displacement, so it stays below 1).

    python benchmarks/latent_actions.py --data DATASET [--video V ...] [--steps 1500]
                                        [--out results/curricula/latent_actions.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from wam.data import latent_actions
from wam.data.lerobot import LeRobotDataset
from wam.data.mixture import combine
from wam.data.normalize import Normalizer
from wam.envs import get_suite
from wam.eval.budget import machine_info
from wam.io import atomic_write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--video", type=Path, nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--horizon", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/curricula/latent_actions.json"))
    args = parser.parse_args()
    labelled = LeRobotDataset.load(args.data)
    dataset = combine(labelled, [LeRobotDataset.load(v) for v in args.video]) if args.video else labelled
    suite = get_suite(dataset.suite)
    action_dim = dataset.features["action"]["shape"][0]
    normalizer = Normalizer({"action": [action_dim]}, {"action": "minmax"})
    normalizer.load_stats(labelled.stats)

    def normalize(chunks: np.ndarray) -> np.ndarray:
        return normalizer.normalize("action", torch.from_numpy(chunks)).numpy()

    config = latent_actions.LatentActionConfig(suite.image_key, 64, args.horizon, action_dim)
    start = time.perf_counter()
    model, report = latent_actions.fit(dataset, config, args.steps, args.seed)
    fit_s = time.perf_counter() - start
    latent = latent_actions.label(model, dataset)
    now, later = latent_actions.frame_pairs(dataset, args.horizon)
    state = dataset.frames[suite.state_key]
    displacement = np.repeat((state[later] - state[now])[:, None], args.horizon, axis=1)
    result = {"data": str(args.data), "video": [str(v) for v in args.video], "frames": dataset.num_frames,
              "steps": args.steps, "horizon": args.horizon, "seed": args.seed, **report, "fit_s": fit_s,
              "action_probe_r2": latent_actions.probe_r2(latent, dataset, normalize),
              "displacement_probe_r2": latent_actions.probe_r2(displacement, dataset, normalize),
              "distinct_latents": int(len(np.unique(latent[:, :: args.horizon // config.tokens].reshape(
                  len(latent), -1), axis=0))),
              "machine": machine_info("cpu")}
    print(f"decoder error {report['prediction_mse']:.4f} with the latent, {report['prediction_mse_without_latent']:.4f}"
          f" without; linear probe R^2 of the real action chunks: {result['action_probe_r2']:.3f} from the latent, "
          f"{result['displacement_probe_r2']:.3f} from the observed state displacement; "
          f"{result['distinct_latents']} distinct latents over {dataset.num_frames} frames; fit {fit_s:.0f} s")
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
