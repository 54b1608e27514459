"""``wam eval``: seeded closed-loop episodes in the model's suite, reported as accuracy at budget.

``eval_info.json`` is a superset of LeRobot's: ``per_episode`` and ``aggregated`` as there, plus ``per_task``,
``budget`` (latency per call and per action, effective control rate, feasibility at the control rate, peak
memory), ``model`` (4-tuple, parameters) and ``machine``. Evaluation seeds start at ``EVAL_SEED_BASE`` and are
checked against the demonstration seeds of the training dataset when it is at hand.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro
from annotated_types import Ge
from tqdm import tqdm

from wam.anatomy import Coupling
from wam.couplings.planners import PlannerOverrides
from wam.data.collect import EVAL_SEED_BASE
from wam.data.lerobot import DatasetError, LeRobotDataset, read_episodes
from wam.deployment import DeploymentConfig, Policy, make_policy
from wam.envs import Suite, SuiteEnv, check_suite_name, get_suite, resolve_tasks
from wam.eval.budget import MemoryMeter, latency_block, machine_info, process_peak_memory_mb
from wam.io import atomic_write_bytes, atomic_write_json, config_dict
from wam.model import CONFIG_NAME, WEIGHTS_NAME, WorldActionModel
from wam.options import CheckedOptions
from wam.train.loop import resolve_device


@dataclass
class EvalConfig(CheckedOptions):
    """Evaluate a trained model closed-loop in its suite and report success with latency and memory."""

    run: Path
    """Run directory written by `wam train` (holds model/)."""
    tasks: str
    """Comma-separated tasks, suite/task names or groups of the model's suite (e.g. drawer-open-v3, metaworld/easy,
    pusht)."""
    episodes: Annotated[int, Ge(1)]
    """Episodes per task, on seeds disjoint from the demonstrations."""
    out: Path
    """Output directory for eval_info.json and videos."""
    video: Annotated[int, Ge(0)] = 0
    """Write rollout videos of the first K episodes of each task."""
    suite: str | None = None
    """The suite to evaluate in; default and only choice: the one the model was trained on."""
    max_steps: Annotated[int | None, Ge(1)] = None
    """Episode cap in control steps; default: the suite's own (MetaWorld 500, PushT 300)."""
    inference_steps: Annotated[int | None, Ge(1)] = None
    """Sampler steps per call; default: the model's."""
    future_horizon: Annotated[int | None, Ge(1)] = None
    """Generate only the first N future offsets at inference (a shorter prediction horizon); default: all."""
    future: Literal["skip", "predict", "truncate"] | None = None
    """For models with a future stream: skip it (act directly) or predict it first (imagine, then act)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Ge(1)] = 1
    """CPU threads per model call. One by default: a batch-of-one call of a small model gains little from more,
    and on a machine where another job holds a core, a second thread that waits for it made calls up to 100x
    slower (measured: 16 ms against 1.6 s per call)."""
    seed: Annotated[int, Ge(0)] = 0
    """Offset into the evaluation seeds (episode j of a task uses seed EVAL_SEED_BASE + seed + j)."""
    deploy: tyro.conf.OmitArgPrefixes[DeploymentConfig] = field(default_factory=DeploymentConfig)
    """Deployment regime and its dials (K, temporal ensembling, adaptive surprise threshold, KV cache, decode)."""
    sweep: tuple[str, ...] = ()
    """Evaluate a grid of operating points instead of one, e.g. --sweep inference-steps=2,5,10 n-action-steps=4,8
    (dials: inference-steps, future, future-horizon, n-action-steps, deployment, ensemble, surprise, decode,
    kv-cache); writes sweep.json and sweep.png (success against latency) into --out. See wam.eval.sweep."""
    planner: PlannerOverrides = field(default_factory=PlannerOverrides)
    """Rollout models: change the search at evaluation time (the weights stay)."""
    offline: bool = False
    """Instead of closed-loop episodes, run the offline screens on held-out demonstrations (see wam.eval.offline):
    --episodes demonstrations per task are collected on held-out seeds, unless --data names a dataset."""
    shift: str = "none"
    """Evaluate under a declared distribution shift of the suite (MetaWorld: camera, colour, placement; see
    wam.envs.metaworld.SHIFTS)."""
    data: Path | None = None
    """Held-out demonstrations for --offline (a dataset written by `wam collect` with another --seed)."""
    ray: bool = False
    """Fan the episodes out to Ray workers on a local Ray cluster started for this run (same results as one
    process for the same seeds)."""
    ray_address: str | None = None
    """Fan the episodes out to an existing Ray cluster, e.g. ray://head:10001 or auto (see the README)."""
    ray_workers: Annotated[int | None, Ge(1)] = None
    """Ray workers (one model and one simulator per task each); default: the cluster's CPUs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.suite is not None:
            check_suite_name(self.suite)
        if self.sweep:
            from wam.eval.sweep import point_configs

            point_configs(self)  # every operating point's options are checked before any point runs


def _check_seeds_disjoint(run: Path, seeds: set[int], what: str = "evaluation seeds",
                          fix: str = "pick another --seed") -> None:
    try:
        episodes = read_episodes(json.loads((run / "train_config.json").read_text())["data"])
    except (OSError, KeyError, ValueError, DatasetError):
        return  # the training data moved away; evaluation seeds are disjoint by construction anyway
    overlap = seeds & {e["seed"] for e in episodes}
    if overlap:
        raise ValueError(f"{what} {sorted(overlap)[:5]} were used for the training demonstrations; {fix}")


def model_block(model: WorldActionModel, run: Path, policy: Policy | None = None) -> dict[str, Any]:
    """What was evaluated: the 4-tuple, the runtime knobs in force and the deployment regime with its dials."""
    c = model.config
    return {"spec": c.spec.to_dict(), "inference_steps": c.inference_steps, "horizon": c.horizon,
            "future_offsets": list(c.future_offsets), "future_horizon": c.future_horizon,
            "future_at_inference": c.future_at_inference,
            "planner": asdict(c.planner) if c.spec.coupling is Coupling.ROLLOUT else None,
            "deployment": None if policy is None else policy.knobs(), "run": str(run)}


def model_suite(cfg: EvalConfig, model: WorldActionModel) -> tuple[Suite, list[str]]:
    """The model's suite and the tasks of ``cfg`` in it; ``ValueError`` when ``--suite`` names another suite or a
    task or shift is not the suite's."""
    name = model.config.suite
    if cfg.suite is not None and cfg.suite != name:
        raise ValueError(f"{cfg.run} holds a model trained on the {name} suite, not {cfg.suite}; evaluate it with "
                         f"--suite {name} (or without --suite)")
    suite, tasks = resolve_tasks(cfg.tasks, name)
    if suite.name != name:
        raise ValueError(f"--tasks {cfg.tasks!r} are {suite.name} tasks but the model was trained on {name}")
    suite.check_shift(cfg.shift)
    return suite, tasks


def run_offline(cfg: EvalConfig, model: WorldActionModel, suite: Suite, tasks: list[str]) -> dict[str, Any]:
    """The offline screens of ``model`` on held-out demonstrations; writes and returns ``offline_info.json``."""
    from wam.data.collect import HELDOUT_SEED_BASE, CollectConfig, run_collect
    from wam.eval.offline import offline_screens
    from wam.train.loop import check_compatible

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
    _check_seeds_disjoint(Path(cfg.run), {e["seed"] for e in dataset.episodes}, f"the seeds of {data}",
                          "screen on held-out demonstrations (omit --data to collect them)")
    start = time.perf_counter()
    screens = offline_screens(model, dataset, seed=cfg.seed)
    info = {"offline": screens, "time_s": time.perf_counter() - start, "data": str(data),
            "model": model_block(model, cfg.run),
            "machine": machine_info(model.device), "config": config_dict(cfg)}
    atomic_write_json(out / "offline_info.json", info)
    return info


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Run the evaluation described by ``cfg``; writes and returns ``eval_info.json`` (``offline_info.json``)."""
    if cfg.sweep:
        from wam.eval.sweep import run_sweep

        return run_sweep(cfg)
    if cfg.suite is not None:
        resolve_tasks(cfg.tasks, cfg.suite)  # refuse an unknown task before loading anything
    torch.set_num_threads(cfg.threads)
    model = load_for_eval(cfg, Path(cfg.run) / "model")
    suite, tasks = model_suite(cfg, model)
    if cfg.offline:
        return run_offline(cfg, model, suite, tasks)
    seeds = [EVAL_SEED_BASE + cfg.seed + j for j in range(cfg.episodes)]
    _check_seeds_disjoint(Path(cfg.run), set(seeds))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(task, j, seed) for task in tasks for j, seed in enumerate(seeds)]
    start = time.perf_counter()
    if cfg.ray or cfg.ray_address:
        from wam.cluster import fan_out

        model_dir = Path(cfg.run) / "model"
        files = {name: (model_dir / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
        records = list(tqdm(fan_out(RemoteEpisodeRunner, (cfg, files), jobs, cfg.ray_address, cfg.ray_workers),
                            total=len(jobs), desc="eval (ray)", unit="ep"))
        policy = make_policy(model, cfg.deploy, seed=cfg.seed)  # for its description; the workers acted
    else:
        runner = EpisodeRunner(cfg, model)
        with tqdm(total=len(jobs), desc="eval", unit="ep") as bar:
            records = []
            for job in jobs:
                records.append(runner.episode(*job))
                bar.update()
                bar.set_postfix(success=f"{np.mean([r['success'] for r in records]):.2f}")
        runner.close()
        policy = runner.policy
    wall = time.perf_counter() - start

    videos, latencies, per_episode, peak_mb = [], [], [], 0.0
    for i, record in enumerate(records):
        j, video = record.pop("j"), record.pop("video")
        latencies += record.pop("call_latencies")
        peak_mb = max(peak_mb, record.pop("peak_memory_mb"))
        if video is not None:
            path = out / "videos" / f"{record['task']}_ep{j:03d}.mp4"
            atomic_write_bytes(path, video)
            videos.append(str(path))
        per_episode.append({"episode_ix": i, **record})
    actions_executed = sum(e["steps"] for e in per_episode)
    per_task = {t: {"pc_success": 100.0 * float(np.mean([e["success"] for e in per_episode if e["task"] == t])),
                    "n_episodes": cfg.episodes} for t in tasks}
    info = {
        "per_episode": per_episode,
        "per_task": per_task,
        "aggregated": {
            "pc_success": 100.0 * float(np.mean([e["success"] for e in per_episode])),
            "avg_sum_reward": float(np.mean([e["sum_reward"] for e in per_episode])),
            "avg_max_reward": float(np.mean([e["max_reward"] for e in per_episode])),
            "avg_steps": float(np.mean([e["steps"] for e in per_episode])),
            "eval_s": wall, "eval_ep_s": wall / len(per_episode),
        },
        "budget": {**latency_block(latencies, actions_executed, policy.min_actions_per_call, suite.control_hz,
                                   [e["model_calls"] for e in per_episode], [e["steps"] for e in per_episode]),
                   "peak_memory_mb": peak_mb,
                   "process_peak_memory_mb": process_peak_memory_mb(), "parameters": model.num_parameters()},
        "model": model_block(model, cfg.run, policy),
        "machine": machine_info(model.device),
        "video_paths": videos,
        "config": config_dict(cfg),
    }
    atomic_write_json(out / "eval_info.json", info)
    return info


def load_for_eval(cfg: EvalConfig, directory: Path) -> WorldActionModel:
    """The model in ``directory`` with the evaluation's runtime knobs (sampler steps, future, planner) applied."""
    model = WorldActionModel.load(directory, device=resolve_device(cfg.device))
    if cfg.inference_steps is not None:
        model.config.inference_steps = cfg.inference_steps
    if cfg.future is not None:
        model.set_future_at_inference(cfg.future)
    if cfg.future_horizon is not None:
        model.set_future_horizon(cfg.future_horizon)
    model.set_planner(cfg.planner.apply(model.config.planner))
    return model


class EpisodeRunner:
    """Seeded closed-loop episodes of one model under one deployment, in this process or in a Ray worker.

    Every episode reseeds the policy from its own seed, so an episode's outcome does not depend on which episodes
    ran before it or where: a fan-out over workers gives what one process gives.
    """

    def __init__(self, cfg: EvalConfig, model: WorldActionModel):
        self.cfg, self.model = cfg, model
        self.policy = make_policy(model, cfg.deploy, seed=cfg.seed)
        self.suite = get_suite(model.config.suite)
        self.track = self.suite.track_of(model.config.observation_shapes)
        self.expected = {k: list(v) for k, v in model.config.observation_shapes.items()}
        self.memory = MemoryMeter()
        self._envs: dict[str, SuiteEnv] = {}

    def _env(self, task: str) -> SuiteEnv:
        if task not in self._envs:
            size = self.expected[self.suite.image_key][0] if self.track == "vision" else None
            env = self.suite.make_env(task, track=self.track, image_size=size, max_episode_steps=self.cfg.max_steps,
                                      shift=self.cfg.shift)
            got = {k: list(s.shape) for k, s in env.observation_space.spaces.items()}
            if got != self.expected:
                raise ValueError(f"the model expects observations {self.expected} but the {self.track} track gives "
                                 f"{got}")
            self._envs[task] = env
        return self._envs[task]

    def episode(self, task: str, j: int, seed: int) -> dict[str, Any]:
        """Episode ``j`` of ``task`` on ``seed``: outcome, model calls and their latencies, and the video (mp4 bytes)
        for the first ``--video`` episodes of each task."""
        env, policy = self._env(task), self.policy
        obs, _ = env.reset(seed=seed)
        policy.reset(seed=seed)
        calls_before = len(policy.call_latencies)
        frames, rewards, success, steps = [], [], False, 0
        t0 = time.perf_counter()
        while True:
            if j < self.cfg.video and self.track == "vision":
                frames.append(obs[self.suite.image_key])
            obs["task"] = self.suite.instruction(task)
            obs, reward, success, truncated, _ = env.step(policy.select_action(obs))
            rewards.append(reward)
            self.memory.sample()
            steps += 1
            if success or truncated:
                break
        return {"task": task, "j": j, "seed": seed, "success": bool(success), "steps": steps,
                "model_calls": len(policy.call_latencies) - calls_before, "sum_reward": float(np.sum(rewards)),
                "max_reward": float(np.max(rewards)), "time_s": time.perf_counter() - t0,
                "call_latencies": policy.call_latencies[calls_before:], "peak_memory_mb": self.memory.peak_mb,
                "video": video_bytes(frames, self.suite.control_hz) if frames else None}

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


class RemoteEpisodeRunner:
    """An ``EpisodeRunner`` in a Ray worker: the model arrives as its files (no shared filesystem needed)."""

    def __init__(self, cfg: EvalConfig, files: dict[str, bytes]):
        torch.set_num_threads(cfg.threads)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                Path(tmp, name).write_bytes(data)
            self.runner = EpisodeRunner(cfg, load_for_eval(cfg, Path(tmp)))

    def run(self, task: str, j: int, seed: int) -> dict[str, Any]:
        return self.runner.episode(task, j, seed)


def video_bytes(frames: list[np.ndarray], control_hz: float) -> bytes:
    """``frames`` as an mp4 file's bytes (workers on other machines send them back rather than write them)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "episode.mp4", frames, control_hz).read_bytes()


def write_video(path: Path, frames: list[np.ndarray], control_hz: float, scale: int = 4) -> Path:
    """``frames`` enlarged ``scale`` times (64 px is too small to watch), played at half the control rate (at
    least 5 frames per second)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    big = [np.repeat(np.repeat(f, scale, axis=0), scale, axis=1) for f in frames]
    imageio.mimwrite(path, big, fps=max(5, int(control_hz // 2)), macro_block_size=1)
    return path
