"""Synthetic demonstrations dreamed by a trained WAM, labelled with actions (DreamGen's recipe), for ``wam train
--synthetic``.

Each episode starts from a real first frame (a seeded reset of the model's suite, at seeds of their own, apart
from demonstration and evaluation seeds) and never touches the simulator again: the model's own policy acts on
the dreamed observations, and its forward model ``p(s | c, a)`` dreams the next frame of every control step
(``DreamEnv`` with a stride of one step, so the generator must predict the frame one step ahead: a first future
offset of 1). The episode's actions are then

- ``driving``: the actions that drove the dream (exact for the dream's own dynamics), or
- ``inverse``: relabelled by the model's inverse dynamics ``p(a | c, s)`` from the dreamed frames alone, as
  DreamGen's inverse dynamics model labels its generated video (joint models whose action reads the future).
  ``label_gap`` records how far these labels lie from the driving actions, in half action ranges.

A dream has no simulator to judge it, so dreamed episodes carry no success flag, reward or ground truth; a model
that learns from those (keypoint or affordance substrates, a planner's progress head) cannot train on them.
Episode ``e`` is fully determined by (task, seed), as in ``wam collect``: an interrupted run resumes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge, Le
from tqdm import tqdm

from wam.data.collect import MAX_DEMO_SEED, SYNTHETIC_SEED_BASE, begin_collection
from wam.data.lerobot import STAGING, LeRobotDataset, finalize, read_staged_meta, write_staged_episode
from wam.deployment import make_policy
from wam.deployment.dream import DreamEnv, check_dreamable
from wam.envs import Suite, resolve_tasks
from wam.io import config_dict
from wam.model import WorldActionModel
from wam.options import CheckedOptions

LABEL_BATCH = 64  # windows per inverse-dynamics call


@dataclass
class SynthesizeConfig(CheckedOptions):
    """Dream labelled episodes with a trained WAM from real first frames (DreamGen), for `wam train --synthetic`."""

    run: Path
    """Run directory written by `wam train` (holds model/): a model that dreams pixels given actions (coupling joint
    or rollout, a pixel substrate) with a first future offset of 1 (train it with --future-offsets 1 ...)."""
    tasks: str
    """Comma-separated tasks of the model's suite, suite/task names or whole groups."""
    episodes: Annotated[int, Ge(1)]
    """Dreamed episodes per task."""
    out: Path
    """Dataset directory (created; an unfinished run there is resumed)."""
    steps: Annotated[int, Ge(1), Le(10_000)] = 150
    """Control steps of every dreamed episode (a dream never ends by itself: it has no success to reach)."""
    labels: Literal["driving", "inverse"] = "driving"
    """The episode's actions: those that drove the dream, or the model's inverse dynamics p(a|c,s) on the dreamed
    frames (DreamGen's labelling; joint models whose action reads the future)."""
    seed: Annotated[int, Ge(0), Le(MAX_DEMO_SEED - 1)] = 0
    """Offset of the first frames' seeds (70,000,000 + seed + e, e < --episodes): real starts that no demonstration
    or evaluation uses."""
    device: Literal["auto", "cpu", "cuda"] = "auto"


def check_synthesizer(model: WorldActionModel, labels: str) -> None:
    """``ValueError`` saying why, when ``model`` cannot dream per-step episodes or label them with ``labels``."""
    check_dreamable(model)
    offset = model.config.future_offsets[0]
    if offset != 1:
        raise ValueError(f"the model dreams one frame every {offset} control steps (its first future offset), but a "
                         "synthetic episode needs a frame at every step; train the generator with --future-offsets "
                         f"1 {' '.join(map(str, model.config.future_offsets))}")
    if labels == "inverse" and (why := model.inverse_refusal()) is not None:
        raise ValueError(f"--labels inverse needs the model's inverse dynamics p(a|c,s), and it has none: {why}; use "
                         "--labels driving")


def run_synthesize(cfg: SynthesizeConfig) -> dict[str, Any]:
    """Dream (or finish dreaming) the dataset of ``cfg``; returns its ``meta/info.json``."""
    from wam.compute import resolve_device

    model = WorldActionModel.load(Path(cfg.run) / "model", device=resolve_device(cfg.device)).eval()
    check_synthesizer(model, cfg.labels)
    suite, tasks = resolve_tasks(cfg.tasks, model.config.suite)
    if suite.name != model.config.suite:
        raise ValueError(f"{cfg.run} holds a model trained on the {model.config.suite} suite; name its tasks")
    cfg = replace(cfg, tasks=",".join(tasks))
    out = Path(cfg.out)
    request = {k: v for k, v in config_dict(cfg).items() if k not in ("out", "device")}
    complete = begin_collection(out, "synthesize_config.json", request, {}, "a synthetic dataset")
    if complete is not None:
        return complete

    size = model.config.observation_shapes[suite.image_key][0]
    features = {**suite.observation_features("vision", size), "action": suite.action_feature()}
    total = len(tasks) * cfg.episodes
    with tqdm(total=total, desc="synthesize", unit="ep") as bar:
        for episode_index in range(total):
            staged = out / STAGING / f"episode-{episode_index:06d}.parquet"
            if not (staged.exists() and read_staged_meta(staged) is not None):
                task = tasks[episode_index // cfg.episodes]
                seed = SYNTHETIC_SEED_BASE + cfg.seed + episode_index % cfg.episodes
                frames, gap = dream_episode(model, suite, task, seed, cfg.steps, cfg.labels)
                meta = {"task": task, "seed": seed, "episode_index": episode_index, "label_gap": gap}
                write_staged_episode(out, episode_index, frames, features, meta)
            bar.update()
    gaps = [read_staged_meta(p)["label_gap"] for p in sorted((out / STAGING).glob("episode-*.parquet"))]
    return finalize(out, features, fps=suite.control_hz, robot_type=suite.robot_type, extra_info={"wam": {
        "suite": suite.name, "track": "vision", "tasks": tasks, "episodes_per_task": cfg.episodes, "seed": cfg.seed,
        "actions": True, "synthetic": {
            "run": str(cfg.run), "spec": model.config.spec.to_dict(), "labels": cfg.labels, "steps": cfg.steps,
            "label_gap": None if cfg.labels == "driving" else float(np.mean(gaps)),
            "label_gap_is": "mean |inverse label - driving action| per action dimension, in half action ranges"}}})


def dream_episode(model: WorldActionModel, suite: Suite, task: str, seed: int, steps: int, labels: str,
                  ) -> tuple[dict[str, list[np.ndarray]], float | None]:
    """One dreamed episode: its observations and actions per control step, and (for ``inverse`` labels) the mean
    gap between the labels and the driving actions."""
    env = DreamEnv(model, task, seed=seed, max_episode_steps=steps)
    policy = make_policy(model, seed=seed)
    low, high = suite.action_bounds()
    frames: dict[str, list[np.ndarray]] = {k: [] for k in [*env.observation_space.spaces, "action"]}
    try:
        observation, _ = env.reset(seed=seed)
        policy.reset()
        for _ in range(steps):
            action = np.clip(np.asarray(policy.select_action({**observation, "task": env.instruction}),
                                        dtype=np.float32), low, high)
            for key, value in observation.items():
                frames[key].append(value)
            frames["action"].append(action)
            observation, *_ = env.step(action[None])
    finally:
        env.close()
    if labels == "driving":
        return frames, None
    driving = np.stack(frames["action"])
    inferred = np.clip(inverse_labels(model, suite, task, frames, seed), low, high)
    frames["action"] = list(inferred)
    return frames, float(np.mean(np.abs(inferred - driving) / ((high - low) / 2)))


def inverse_labels(model: WorldActionModel, suite: Suite, task: str, frames: dict[str, list[np.ndarray]],
                   seed: int) -> np.ndarray:
    """The action at every step of an episode by the model's inverse dynamics: the first action of the chunk that
    leads from each step's history to its future frames (clamped at the episode's end, as in training windows)."""
    n = len(frames["action"])
    arrays = {k: np.stack(v) for k, v in frames.items() if k != "action"}
    info = {"features": {k: {} for k in arrays}, "total_frames": n, "wam": {"suite": suite.name}}
    with tempfile.TemporaryDirectory() as scratch:  # where substrate caches of this episode may be written
        episode = LeRobotDataset(Path(scratch), info, {}, {**arrays, "task_index": np.zeros(n, np.int64)},
                                 [{"dataset_from_index": 0, "dataset_to_index": n}], [task])
        model.add_caches(episode)  # autoencoder codes of the dreamed frames, for latent substrates
    windows = model.windows(episode, video=True)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    chunks = [model.inverse(windows.batch(np.arange(i, min(i + LABEL_BATCH, n))), generator)[:, 0]
              for i in range(0, n, LABEL_BATCH)]
    return torch.cat(chunks).cpu().numpy().astype(np.float32)
