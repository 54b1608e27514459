"""Offline screens: cheap open-loop measurements on held-out demonstrations, to set next to closed-loop success.

For windows of held-out episodes the model is asked for its action chunk and its future, and compared with what
the scripted expert did and what the simulator then showed:

- ``action_mse_executed`` / ``action_mse_chunk``: squared error of the normalized action (in [-1, 1]) over the K
  steps a chunked deployment executes, and over the whole chunk;
- per substrate stream, the future-prediction error in the model's own substrate space (mean squared error, or
  the token error rate for discrete codes). Rollout couplings predict ``p(s | c, a)`` given the expert's actions,
  the others ``p(s | c)``;
- where the substrate decodes to pixels: PSNR and SSIM of the decoded future frames against the real ones, and
  for autoencoder substrates the same for the autoencoder's reconstruction of the true codes (the ceiling);
- for geometric substrates: the mean 3-D keypoint error in centimetres;
- for rollout couplings, ``expert_chunk_rank``: the fraction of the planner's first proposals that the expert's
  chunk outscores under the planner's objective (0.5: the objective cannot tell the expert from a proposal).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wam.compute import cpu_threads
from wam.data.collect import HELDOUT_SEED_BASE, CollectConfig, run_collect
from wam.data.lerobot import LeRobotDataset
from wam.eval.budget import machine_info
from wam.eval.config import EvalConfig
from wam.eval.subject import check_seeds_disjoint, load_for_eval, model_block, model_suite
from wam.io import atomic_write_json, config_dict
from wam.model import InferenceConfig, WorldActionModel
from wam.train.loop import check_compatible


@torch.no_grad()
def offline_screens(model: WorldActionModel, dataset, max_windows: int = 512, batch_size: int = 64,
                    seed: int = 0, inference: InferenceConfig | None = None) -> dict[str, Any]:
    """Screens of ``model`` over up to ``max_windows`` windows of ``dataset`` (held-out demonstrations)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    model.eval()
    model.add_caches(dataset)
    truth = [k for s in model.substrates.values() for k in (getattr(s, "image_key", None),) if k]
    if any(s.kind.value == "geometric" for s in model.substrates.values()):
        truth.append("groundtruth.keypoints_xyz")
    windows = model.windows(dataset, tuple(truth))  # plus what the decoded futures are compared with
    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(len(windows), min(max_windows, len(windows)), replace=False))
    generator = torch.Generator(device=model.device).manual_seed(seed)
    k = model.config.n_action_steps
    sums: dict[str, list[float]] = {}

    def add(key: str, value: torch.Tensor | float, n: int) -> None:
        total, count = sums.get(key, [0.0, 0])
        sums[key] = [total + float(value) * n, count + n]

    for lo in range(0, len(positions), batch_size):
        batch = windows.batch(positions[lo:lo + batch_size])
        b = len(batch["task"])
        truth = model.normalizer.normalize("action", batch["action"].to(model.device))
        chunk = model.normalizer.normalize("action", model.act(batch, generator=generator, inference=inference))
        add("action_mse_executed", (chunk - truth)[:, :k].pow(2).mean(), b)
        add("action_mse_chunk", (chunk - truth).pow(2).mean(), b)
        if not model.substrates:
            continue
        if model.coupling.plans:
            add("expert_chunk_rank", model.rank_actions(batch, batch["action"], generator, inference).mean(), b)
        _, targets = model.targets(batch)
        given = batch["action"] if model.coupling.plans else None
        predicted = model.predict(batch, actions=given, generator=generator, inference=inference)
        for substrate in model.substrates.values():
            name, pred = substrate.name, predicted[substrate.name]
            target = targets[name][:, :pred.shape[1]]  # the predicted horizon may be shortened
            if substrate.stream.vocab:
                add(f"{name}/token_error", (pred != target).float().mean(), b)
            else:
                add(f"{name}/mse", (pred - target).pow(2).mean(), b)
            if not substrate.has_decoder:
                continue
            decoded = substrate.decode(pred)
            if "frames" in decoded:
                key = getattr(substrate, "image_key")
                real = batch[f"future.{key}"][:, :substrate.frames_in(pred)].to(model.device)
                real = real.permute(0, 1, 4, 2, 3).float().div(255).flatten(0, 1)
                for label, frames in (("", decoded["frames"]), ("ceiling_", _ceiling(substrate, target))):
                    if frames is None:
                        continue
                    frames = frames.flatten(0, 1)
                    add(f"{name}/{label}psnr", peak_signal_noise_ratio(frames, real, data_range=1.0), b)
                    add(f"{name}/{label}ssim", structural_similarity_index_measure(frames, real, data_range=1.0), b)
            if "keypoints_xyz" in decoded:
                real = batch["future.groundtruth.keypoints_xyz"][:, :substrate.frames_in(pred)].to(model.device)
                add(f"{name}/keypoint_error_cm", 100 * (decoded["keypoints_xyz"] - real).norm(dim=-1).mean(), b)
    screens = {key: total / count for key, (total, count) in sums.items()}
    screens["windows"] = int(len(positions))
    return screens


def _ceiling(substrate, target: torch.Tensor) -> torch.Tensor | None:
    """Frames an autoencoder substrate reconstructs from the true codes: the best its decoder allows."""
    if not hasattr(substrate, "autoencoder"):
        return None
    return substrate.decode(target)["frames"]


def run_offline(cfg: EvalConfig) -> dict[str, Any]:
    """The offline screens of ``cfg.run``'s model on held-out demonstrations (collected on held-out seeds unless
    ``cfg.data`` names them); writes and returns ``offline_info.json``."""
    with cpu_threads(cfg.threads):
        model, inference = load_for_eval(cfg, Path(cfg.run) / "model")
        suite, tasks, cfg = model_suite(cfg, model)

        out = Path(cfg.out)
        data = cfg.data
        if data is None:
            shapes = model.config.observation_shapes
            size = shapes[suite.image_key][0] if suite.image_key in shapes else None
            data = out / "heldout-data"
            run_collect(CollectConfig(tasks=",".join(tasks), episodes=cfg.episodes, out=data, suite=suite.name,
                                      track=suite.track_of(shapes), seed=HELDOUT_SEED_BASE + cfg.seed, image_size=size))
        dataset = LeRobotDataset.load(data)
        check_compatible(model, dataset)
        check_seeds_disjoint(Path(cfg.run), {e["seed"] for e in dataset.episodes if "seed" in e},
                             f"the seeds of {data}", "screen on held-out demonstrations (omit --data to collect them)")
        start = time.perf_counter()
        screens = offline_screens(model, dataset, seed=cfg.seed, inference=inference)
        info = {"offline": screens, "time_s": time.perf_counter() - start, "data": str(data),
                "model": model_block(model, cfg.run, inference=inference),
                "machine": machine_info(model.device), "config": config_dict(cfg)}
        atomic_write_json(out / "offline_info.json", info)
        return info
