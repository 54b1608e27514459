"""``wam eval``, closed loop: seeded episodes in the model's suite, reported as accuracy at budget.

``eval_info.json`` is a superset of LeRobot's: ``per_task`` (a list of ``{task_group, task_id, metrics}``),
``per_group`` and ``overall`` as LeRobot's multi-task evaluation writes them (0.4.4 and 0.6.1), ``per_episode``
and ``aggregated`` as its single-task ``eval_policy`` does, plus the task name in each ``per_task`` entry,
``budget`` (latency per call and per action, effective control rate, feasibility at the control rate, peak
memory), ``failures`` (failed episodes counted by the suite's failure tags, overall and per task, with the tags'
definitions; each ``per_episode`` entry names its own), ``model`` (4-tuple, parameters) and ``machine``.
Evaluation seeds start at ``EVAL_SEED_BASE`` and are checked against the demonstration seeds of the training dataset
when it is at hand.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from wam.compute import cpu_threads
from wam.data.collect import EVAL_SEED_BASE
from wam.deployment import Policy, make_policy
from wam.envs import Suite, SuiteEnv, get_suite, resolve_task_groups, resolve_tasks
from wam.eval.budget import MemoryMeter, latency_block, machine_info, process_peak_memory_mb
from wam.eval.config import EvalConfig
from wam.eval.lockstep import EpisodeProgress, LockstepRunner
from wam.eval.subject import check_observations, check_seeds_disjoint, load_for_eval, model_block, model_suite
from wam.io import atomic_write_bytes, atomic_write_json, config_dict
from wam.model import CONFIG_NAME, WEIGHTS_NAME, InferenceConfig, WorldActionModel


def run_closed_loop(cfg: EvalConfig) -> dict[str, Any]:
    """Seeded closed-loop episodes of ``cfg``; writes and returns ``eval_info.json``."""
    if cfg.suite is not None:
        resolve_tasks(cfg.tasks, cfg.suite)  # refuse an unknown task before loading anything
    with cpu_threads(cfg.threads):
        model, inference = load_for_eval(cfg, Path(cfg.run) / "model")
        suite, tasks, cfg = model_suite(cfg, model)
        seeds = [EVAL_SEED_BASE + cfg.seed + j for j in range(cfg.episodes)]
        check_seeds_disjoint(Path(cfg.run), set(seeds))
        Path(cfg.out).mkdir(parents=True, exist_ok=True)  # before the episodes: a bad --out fails before they run
        jobs = [(task, j, seed) for task in tasks for j, seed in enumerate(seeds)]
        start = time.perf_counter()
        records, policy, rows_per_call = run_episodes(cfg, model, inference, jobs)
        wall = time.perf_counter() - start
        alone = time_one_robot(cfg, model, inference, jobs[0]) if rows_per_call > 1 and cfg.time_alone else None
        info = eval_info(cfg, model, policy, suite, tasks, records, wall=wall, rows_per_call=rows_per_call, alone=alone)
        atomic_write_json(Path(cfg.out) / "eval_info.json", info)
        return info


def time_one_robot(cfg: EvalConfig, model: WorldActionModel, inference: InferenceConfig,
                   job: tuple[str, int, int]) -> dict[str, Any]:
    """The record of ``job`` run again one at a time, for the latency of one robot's calls: a call of batched
    evaluation serves several episodes and takes longer than a robot alone would wait."""
    runner = EpisodeRunner(replace(cfg, video=0), model, inference)
    try:
        return runner.episode(*job)
    finally:
        runner.close()


def run_episodes(cfg: EvalConfig, model: WorldActionModel, inference: InferenceConfig,
                 jobs: list[tuple[str, int, int]]) -> tuple[list[dict[str, Any]], Policy, float]:
    """The episode records of ``jobs`` (task, index, seed), on Ray workers, in lockstep environments with batched
    calls, or one at a time in this process; the policy that acted (for its description); and the mean number of
    episodes a model call served."""
    if cfg.ray or cfg.ray_address:
        from wam.cluster import fan_out

        model_dir = Path(cfg.run) / "model"
        files = {name: (model_dir / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
        records = list(tqdm(fan_out(RemoteEpisodeRunner, (cfg, files), jobs, cfg.ray_address, cfg.ray_workers),
                            total=len(jobs), desc="eval (ray)", unit="ep"))
        return records, make_policy(model, cfg.deploy, seed=cfg.seed, inference=inference), 1.0  # workers acted
    envs = min(cfg.envs, len(jobs))
    if envs > 1 and model.coupling.keeps_episode_state(inference.planner):
        print(f"eval: one episode at a time instead of --envs {cfg.envs}: the planner's {inference.planner.proposal!r} "
              "proposal searches around the episode's last plan, which the model keeps", file=sys.stderr)
        envs = 1
    if envs > 1:
        lockstep = LockstepRunner(cfg, model, inference, envs)
        try:
            with tqdm(total=len(jobs), desc=f"eval ({envs} envs)", unit="ep") as bar:
                records = lockstep.run(jobs, done=lambda record: bar.update())
        finally:
            lockstep.close()
        rows = lockstep.rows_per_call
        return records, lockstep.policy, float(np.mean(rows)) if rows else 1.0
    runner = EpisodeRunner(cfg, model, inference)
    records = []
    with tqdm(total=len(jobs), desc="eval", unit="ep") as bar:
        for job in jobs:
            records.append(runner.episode(*job))
            bar.update()
            bar.set_postfix(success=f"{np.mean([r['success'] for r in records]):.2f}")
    runner.close()
    return records, runner.policy, 1.0


def _mean_pc(successes: list[bool]) -> float:
    return 100.0 * float(np.mean(successes)) if successes else float("nan")


def _aggregate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """LeRobot's aggregate of task metrics: mean rewards, success in percent, episode count, videos."""
    def joined(key: str) -> list[Any]:
        return [x for p in parts for x in p[key]]

    return {"avg_sum_reward": float(np.mean(joined("sum_rewards"))), "avg_max_reward": float(np.mean(joined("max_rewards"))),
            "pc_success": _mean_pc(joined("successes")), "n_episodes": len(joined("successes")),
            "video_paths": joined("video_paths"), "predicted_video_paths": joined("predicted_video_paths")}


def task_success(info: dict[str, Any]) -> dict[str, float]:
    """Success in percent per task of an ``eval_info.json``, of this format or the one before it (``per_task``
    as a ``{task: {pc_success, n_episodes}}`` mapping, as the committed results of earlier runs hold it)."""
    if isinstance(info["per_task"], dict):
        return {task: row["pc_success"] for task, row in info["per_task"].items()}
    return {entry["task"]: entry["metrics"]["pc_success"] for entry in info["per_task"]}


def failure_counts(suite: Suite, episodes: list[dict[str, Any]]) -> dict[str, int]:
    """How many of ``episodes`` failed under each of the suite's failure tags (every tag listed, zeros too)."""
    counts = dict.fromkeys(suite.failure_tags, 0)
    for episode in episodes:
        if not episode["success"]:
            counts[episode["failure"]] += 1
    return counts


def one_robot_latency(record: dict[str, Any], policy: Policy, suite: Suite) -> dict[str, Any]:
    """The latency and feasibility fields of the budget from an episode run alone (see ``time_one_robot``)."""
    block = latency_block(record["call_latencies"], record["steps"], policy.min_actions_per_call, suite.control_hz)
    keys = ("latency_per_call_ms", "latency_per_action_ms", "effective_control_hz", "feasible_at_control_hz",
            "feasibility_margin")
    return {**{k: block[k] for k in keys}, "latency_timed_alone": {"task": record["task"], "seed": record["seed"],
                                                                   "model_calls": block["model_calls"]}}


def eval_info(cfg: EvalConfig, model: WorldActionModel, policy: Policy, suite: Suite, tasks: list[str],
              records: list[dict[str, Any]], wall: float, rows_per_call: float = 1.0,
              alone: dict[str, Any] | None = None) -> dict[str, Any]:
    """``eval_info.json`` from the episode records (whose videos are written to ``<out>/videos/`` on the way); with
    ``alone`` (an episode run one at a time after a batched evaluation), the latency per call and per action and
    the feasibility test are that episode's, what one robot would see."""
    out = Path(cfg.out)
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
    _, grouped = resolve_task_groups(cfg.tasks, suite.name)
    per_task, groups = [], {}
    for group, task_id, task in grouped:
        episodes = [e for e in per_episode if e["task"] == task]
        paths = [v for v in videos if Path(v).name.startswith(f"{task}_ep")]
        metrics = {"sum_rewards": [e["sum_reward"] for e in episodes], "max_rewards": [e["max_reward"] for e in episodes],
                   "successes": [e["success"] for e in episodes], "video_paths": paths, "predicted_video_paths": [],
                   "pc_success": _mean_pc([e["success"] for e in episodes]), "n_episodes": len(episodes)}
        per_task.append({"task_group": group, "task_id": task_id, "task": task, "metrics": metrics})
        groups.setdefault(group, []).append(metrics)
    return {
        "per_task": per_task,
        "per_group": {group: _aggregate(parts) for group, parts in groups.items()},
        "overall": {**_aggregate([t["metrics"] for t in per_task]), "eval_s": wall, "eval_ep_s": wall / len(per_episode)},
        "per_episode": per_episode,
        "aggregated": {
            "pc_success": _mean_pc([e["success"] for e in per_episode]),
            "avg_sum_reward": float(np.mean([e["sum_reward"] for e in per_episode])),
            "avg_max_reward": float(np.mean([e["max_reward"] for e in per_episode])),
            "avg_steps": float(np.mean([e["steps"] for e in per_episode])),
            "eval_s": wall, "eval_ep_s": wall / len(per_episode),
        },
        "budget": {**latency_block(latencies, actions_executed, policy.min_actions_per_call, suite.control_hz,
                                   [e["model_calls"] for e in per_episode], [e["steps"] for e in per_episode]),
                   **({} if alone is None else one_robot_latency(alone, policy, suite)),
                   "episodes_per_call": rows_per_call, "peak_memory_mb": peak_mb,
                   "process_peak_memory_mb": process_peak_memory_mb(), "parameters": model.num_parameters()},
        "failures": {"overall": failure_counts(suite, per_episode),
                     "per_task": {task: failure_counts(suite, [e for e in per_episode if e["task"] == task])
                                  for task in tasks},
                     "tags": suite.failure_tags},
        "model": model_block(model, cfg.run, policy),
        "suite": {"name": suite.name, "score": suite.score},
        "machine": machine_info(model.device),
        "video_paths": videos,
        "config": config_dict(cfg),
    }


class EpisodeRunner:
    """Seeded closed-loop episodes of one model under one deployment, in this process or in a Ray worker.

    Every episode reseeds the policy from its own seed, so an episode's outcome does not depend on which episodes
    ran before it or where: a fan-out over workers gives what one process gives.
    """

    def __init__(self, cfg: EvalConfig, model: WorldActionModel, inference: InferenceConfig | None = None):
        self.cfg, self.model = cfg, model
        self.policy = make_policy(model, cfg.deploy, seed=cfg.seed, inference=inference)
        self.suite = get_suite(model.config.suite)
        self.track = self.suite.track_of(model.config.observation_shapes)
        self.memory = MemoryMeter()
        self._envs: dict[str, SuiteEnv] = {}

    def _env(self, task: str) -> SuiteEnv:
        if task not in self._envs:
            size = self.model.config.observation_shapes[self.suite.image_key][0] if self.track == "vision" else None
            env = self.suite.make_env(task, track=self.track, image_size=size, max_episode_steps=self.cfg.max_steps,
                                      shift=self.cfg.shift)
            check_observations(self.model, self.track, {k: list(s.shape) for k, s in env.observation_space.spaces.items()})
            self._envs[task] = env
        return self._envs[task]

    def episode(self, task: str, j: int, seed: int) -> dict[str, Any]:
        """Episode ``j`` of ``task`` on ``seed``: outcome, model calls and their latencies, and the video (mp4 bytes)
        for the first ``--video`` episodes of each task."""
        env, policy = self._env(task), self.policy
        obs, _ = env.reset(seed=seed)
        policy.reset(seed=seed)
        episode = EpisodeProgress(task, j, seed, obs, time.perf_counter(), len(policy.call_latencies))
        recording = j < self.cfg.video and self.track == "vision"
        while True:
            if recording:
                episode.frames.append(episode.obs[self.suite.image_key])
            episode.obs["task"] = self.suite.instruction(task)
            action = policy.select_action(episode.obs)
            env.render_images = recording or policy.needs_next_image()
            obs, reward, success, truncated, info = env.step(action)
            self.memory.sample()
            if episode.end_step(obs, reward, success, truncated, info.get("failure")):
                break
        return episode.record(policy, self.memory.peak_mb, self.suite.control_hz)

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
            self.runner = EpisodeRunner(cfg, *load_for_eval(cfg, Path(tmp)))

    def run(self, task: str, j: int, seed: int) -> dict[str, Any]:
        return self.runner.episode(task, j, seed)
