"""``wam dream``: how far a model's dream can be trusted, measured against the real simulator.

A real episode of the model's suite runs for ``steps`` control steps, driven by the model's own policy (on the real
observations) or by the suite's scripted expert; its actions are then replayed, chunk by chunk, in the model's
``DreamEnv`` from the same first frame. ``dream.mp4`` shows real | dream side by side (the dream frame is held
between its updates every ``stride`` steps); ``dream_info.json`` holds the prediction error against horizon (MSE
and PSNR of every dreamed frame against the real frame at that step, and the error of the kinematically
propagated proprioception, in the suite's units), with the model's 4-tuple, time per dream step, peak memory and
the machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge, Le

from wam.compute import resolve_device
from wam.data.collect import EVAL_SEED_BASE
from wam.deployment import make_policy
from wam.deployment.dream import DreamEnv, check_dreamable
from wam.envs import Suite, get_suite
from wam.eval.budget import MemoryMeter, machine_info, process_peak_memory_mb
from wam.eval.subject import model_block
from wam.eval.videos import write_video
from wam.io import atomic_write_json, config_dict
from wam.model import WorldActionModel
from wam.options import CheckedOptions


@dataclass
class DreamConfig(CheckedOptions):
    """Replay a real episode in the model's dream and measure the prediction error against horizon."""

    run: Path
    """Run directory written by `wam train` (holds model/); the model must predict pixels given actions."""
    task: str
    """A task of the model's suite, e.g. drawer-open-v3 or pusht."""
    out: Path
    """Output directory for dream.mp4 and dream_info.json."""
    steps: Annotated[int, Ge(1), Le(10_000)] = 64
    """Control steps of the real episode; the dream replays them in chunks of the model's first future offset."""
    seed: Annotated[int, Ge(0)] = 0
    """Offset into the evaluation seeds: the episode uses seed EVAL_SEED_BASE + seed (placement and sampler)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    policy: Literal["model", "expert"] = "model"
    """Which actions drive both the real episode and the dream: the model's own chunked policy acting on the real
    observations, or the suite's scripted expert."""
    suite: str | None = None
    """The suite to dream in; default and only choice: the one the model was trained on."""


def run_dream(cfg: DreamConfig) -> dict[str, Any]:
    """Run the real episode, replay its actions in the dream; writes ``dream.mp4`` and returns ``dream_info.json``."""
    device = resolve_device(cfg.device)
    model = WorldActionModel.load(Path(cfg.run) / "model", device=device)
    suite = get_suite(model.config.suite)
    if cfg.suite is not None and cfg.suite != suite.name:
        raise ValueError(f"{cfg.run} holds a model trained on the {suite.name} suite, not {cfg.suite}")
    suite.check_tasks([cfg.task])
    if cfg.steps > suite.max_episode_steps:
        raise ValueError(f"--steps {cfg.steps} is longer than a {suite.name} episode ({suite.max_episode_steps} "
                         "control steps)")
    check_dreamable(model)  # refuse a model that cannot dream before anything runs
    stride = model.config.future_offsets[0]
    if cfg.steps < stride:
        raise ValueError(f"--steps {cfg.steps} is shorter than one dream step ({stride} control steps); "
                         f"pass --steps {stride} or more")
    seed = EVAL_SEED_BASE + cfg.seed
    real_frames, real_states, actions = _real_episode(model, suite, cfg, seed)
    image_key, state_key = suite.image_key, suite.state_key

    memory = MemoryMeter()
    dream = DreamEnv(model, cfg.task, seed=seed)
    dims, unit = dream.propagator.dims, dream.propagator.unit
    try:
        observation, _ = dream.reset(seed=seed)
        dream_frames, per_step = [observation[image_key]], []
        for i in range(1, cfg.steps // stride + 1):
            start = time.perf_counter()
            observation, *_ = dream.step(actions[(i - 1) * stride:i * stride])
            elapsed = time.perf_counter() - start
            memory.sample()
            t = i * stride
            mse, psnr = _frame_error(observation[image_key], real_frames[t])
            state_error = np.linalg.norm((observation[state_key] - real_states[t])[:dims])
            per_step.append({"dream_step": i, "horizon": t, "mse": mse, "psnr": psnr,
                             "state_error": float(state_error), "time_s": elapsed})
            dream_frames.append(observation[image_key])
    finally:
        dream.close()

    gap = np.full((real_frames[0].shape[0], 2, 3), 255, np.uint8)
    video = [np.concatenate([real, gap, dream_frames[min(t // stride, len(dream_frames) - 1)]], axis=1)
             for t, real in enumerate(real_frames)]
    times = np.array([s["time_s"] for s in per_step])
    info = {
        "per_step": per_step,
        "summary": {"dream_steps": len(per_step), "stride": stride,
                    "psnr_first": per_step[0]["psnr"], "psnr_last": per_step[-1]["psnr"],
                    "psnr_mean": float(np.mean([s["psnr"] for s in per_step])),
                    "mse_mean": float(np.mean([s["mse"] for s in per_step]))},
        "time_per_dream_step_ms": {"mean": 1e3 * float(times.mean()), "p50": 1e3 * float(np.median(times)),
                                   "max": 1e3 * float(times.max())},
        "memory": {"peak_rss_mb": memory.peak_mb, "process_peak_rss_mb": process_peak_memory_mb()},
        "episode": {"task": cfg.task, "seed": seed, "policy": cfg.policy, "control_steps": cfg.steps},
        "model": model_block(model, cfg.run),
        "machine": machine_info(device),
        "state_error": {"unit": unit, "is": f"distance between the dreamed and the real first {dims} dimensions of "
                                            f"{state_key}"},
        "video_path": str(write_video(Path(cfg.out) / "dream.mp4", video, suite.control_hz)),
        "config": config_dict(cfg),
    }
    atomic_write_json(Path(cfg.out) / "dream_info.json", info)
    return info


def _real_episode(model: WorldActionModel, suite: Suite, cfg: DreamConfig, seed: int,
                  ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Frames and states at control steps 0..steps, and the ``steps`` actions taken between them."""
    size = model.config.observation_shapes[suite.image_key][0]
    env = suite.make_env(cfg.task, track="vision", image_size=size, max_episode_steps=cfg.steps)
    policy = make_policy(model, seed=cfg.seed) if cfg.policy == "model" else suite.expert(env)
    low, high = suite.action_bounds()
    observation, _ = env.reset(seed=seed)
    policy.reset()
    frames, states, actions = [observation[suite.image_key]], [observation[suite.state_key]], []
    for _ in range(cfg.steps):
        observation["task"] = suite.instruction(cfg.task)
        action = np.clip(np.asarray(policy.select_action(observation), dtype=np.float32), low, high)
        observation, *_ = env.step(action)
        frames.append(observation[suite.image_key])
        states.append(observation[suite.state_key])
        actions.append(action)
    env.close()
    return frames, states, np.stack(actions)


def _frame_error(dreamed: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """MSE and PSNR (dB) between two HWC uint8 frames, on [0, 1] intensities."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    a, b = (torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in (dreamed, real))
    return float((a - b).pow(2).mean()), float(peak_signal_noise_ratio(a, b, data_range=1.0))


def print_dream(info: dict[str, Any]) -> None:
    """The prediction error against horizon as a short table, then the cost of a dream step."""
    from rich.console import Console
    from rich.table import Table

    spec = info["model"]["spec"]
    table = Table(title=f"dream vs real, {info['episode']['task']}: {spec['substrate']} · {spec['coupling']} · "
                        f"{spec['backbone']}")
    unit = info["state_error"]["unit"]
    for name in ("dream step", "horizon (steps)", "MSE", "PSNR (dB)", f"state error ({unit})"):
        table.add_column(name, justify="right")
    for s in info["per_step"]:
        table.add_row(str(s["dream_step"]), str(s["horizon"]), f"{s['mse']:.4f}", f"{s['psnr']:.1f}",
                      f"{s['state_error']:.3g}")
    console = Console()
    console.print(table)
    console.print(f"{info['time_per_dream_step_ms']['mean']:.1f} ms per dream step, peak memory "
                  f"{info['memory']['peak_rss_mb']:.0f} MB, on {info['machine']['cpu']} ({info['machine']['device']})")
