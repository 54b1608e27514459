"""The five properties of DESIGN.md section 1, one headline number each per model.

- **interactability**: how much the predicted future moves when the action changes. On held-out windows the
  future is predicted given the expert's chunk and given another window's chunk, with the same sampler noise;
  the number is the relative change ``|f(c, a) - f(c, a')| / |f(c, a)|`` (the fraction of changed codes for
  discrete substrates). 0 means the action is ignored. Only for couplings whose future is conditioned on the
  action (joint generation, rollout); a post-prediction head or a VLA has none.
- **causality** (a leak test): everything in a held-out batch that lies after the current step (the expert's
  actions, future frames and proprioception, labels) is replaced by noise, and the largest change of the action
  chunk is reported. It must be 0.
- **persistence**: the model dreams 96 steps of the expert's actions from a real first frame (``DreamEnv``); the
  number is the PSNR of the dreamed frame at the longest horizon, with the dream's peak memory. Only for models
  that predict pixels given actions.
- **physical plausibility**: the fraction of predicted action-chunk steps the robot can execute as commanded,
  as the suite judges it (``Suite.executable``): every action inside the action bounds, and in MetaWorld the hand,
  integrated kinematically from its current position, inside the mocap workspace. (Keypoint error against the
  simulator's ground truth, for geometric substrates, is an offline screen.)
- **generalization**: closed-loop success under each of the suite's factors of variation at its middle level
  (``Suite.factors``; MetaWorld: camera pose, lighting, colours, distractors, placement outside the training range),
  as a fraction of the unshifted success on the same tasks and seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from wam.anatomy import SpecError
from wam.data.lerobot import LeRobotDataset
from wam.envs import get_suite
from wam.model import WorldActionModel

DREAM_STEPS = 96


def _held_out_batch(model: WorldActionModel, dataset: LeRobotDataset, size: int, seed: int) -> dict[str, Any]:
    model.add_caches(dataset)
    windows = model.windows(dataset)
    rng = np.random.default_rng(seed)
    return windows.batch(np.sort(rng.choice(len(windows), min(size, len(windows)), replace=False)))


def interactability(model: WorldActionModel, batch: dict[str, Any], seed: int = 0) -> float | None:
    """Relative change of the predicted future when each window's chunk is swapped for the next window's."""
    if not model.substrates:
        return None
    actions = batch["action"]
    other = actions.roll(1, dims=0)
    try:
        given = model.predict(batch, actions=actions, generator=torch.Generator(model.device).manual_seed(seed))
    except SpecError:
        return None  # the coupling does not condition its future on the action
    swapped = model.predict(batch, actions=other, generator=torch.Generator(model.device).manual_seed(seed))
    changes = []
    for name, a in given.items():
        b = swapped[name]
        if not a.is_floating_point():
            changes.append(float((a != b).float().mean()))
        else:
            changes.append(float((a - b).norm() / a.norm().clamp_min(1e-12)))
    return float(np.mean(changes))


def causality_leak(model: WorldActionModel, batch: dict[str, Any], seed: int = 0) -> float:
    """The largest change of the action chunk when every input after the current step is replaced by noise."""
    rng = torch.Generator().manual_seed(seed + 1)
    corrupted = dict(batch)
    for key, value in batch.items():
        if key in model.observation_keys or key == "task" or not isinstance(value, torch.Tensor):
            continue
        if value.is_floating_point():
            corrupted[key] = torch.randn(value.shape, generator=rng, dtype=value.dtype) * 10
        elif value.dtype == torch.bool:
            corrupted[key] = torch.randint(0, 2, value.shape, generator=rng).bool()
        else:
            corrupted[key] = torch.randint(0, 255, value.shape, generator=rng).to(value.dtype)
    a = model.act(batch, generator=torch.Generator(model.device).manual_seed(seed))
    b = model.act(corrupted, generator=torch.Generator(model.device).manual_seed(seed))
    return float((a - b).abs().max())


def executable_fraction(model: WorldActionModel, batch: dict[str, Any], seed: int = 0) -> float:
    """Fraction of chunk steps the suite judges executable from the current proprioception."""
    suite = get_suite(model.config.suite)
    chunk = model.act(batch, generator=torch.Generator(model.device).manual_seed(seed)).cpu().numpy()
    states = batch[suite.state_key][:, -1].numpy()
    return float(suite.executable(states, chunk).mean())


def persistence(run: Path, task: str, out: Path, device: str = "auto") -> dict[str, Any] | None:
    """PSNR at the longest horizon of a 96-step dream of the expert's actions, and its peak memory."""
    from wam.deployment.dream import check_dreamable
    from wam.eval.dream import DreamConfig, run_dream

    model = WorldActionModel.load(run / "model")
    try:
        check_dreamable(model)
    except (SpecError, ValueError):
        return None
    info = run_dream(DreamConfig(run=run, task=task, out=out, steps=DREAM_STEPS, policy="expert",
                                 device=device))  # type: ignore[arg-type]
    return {"psnr_last": info["summary"]["psnr_last"], "psnr_first": info["summary"]["psnr_first"],
            "horizon": info["per_step"][-1]["horizon"], "peak_memory_mb": info["memory"]["peak_rss_mb"],
            "time_per_dream_step_ms": info["time_per_dream_step_ms"]["p50"]}


def offline_properties(run: Path, heldout: LeRobotDataset, windows: int = 64, seed: int = 0) -> dict[str, Any]:
    """Interactability, the causality leak and the executable fraction of ``run``'s model on held-out windows."""
    model = WorldActionModel.load(run / "model").eval()
    batch = _held_out_batch(model, heldout, windows, seed)
    return {"interactability": interactability(model, batch, seed), "causality_leak": causality_leak(model, batch, seed),
            "executable_fraction": executable_fraction(model, batch, seed)}
