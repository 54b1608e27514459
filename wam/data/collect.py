"""Scripted-expert demonstrations from any suite, collected in parallel and resumable.

Besides demonstrations, a collection can be action-free video (``--no-actions``: no ``action`` feature, the data of
a curriculum's video stage) and can differ from the robot's own demonstrations in declared, reproducible ways: a
declared shift of the camera or the colours (``--shift``, our stand-in for human or internet video that does not
match the robot's camera), or a non-expert actor (``--action-noise``: the expert's actions with Gaussian noise,
so noisy and often failed attempts).

Episode ``e`` of a collection is fully determined by (task, seed): task ``tasks[e // episodes]`` and demonstration
seed ``seed + e % episodes`` (the expert is retried on ``seed + e % episodes + k * SEED_STRIDE`` when it fails).
Because an episode never depends on which worker ran it or when, an interrupted collection re-run with the same
arguments only collects the episodes that are not staged yet, and the result is identical to an uninterrupted run.
Evaluation seeds start at ``EVAL_SEED_BASE``, far above any demonstration seed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import tempfile
import warnings
from contextlib import ExitStack
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Ge, Interval, Le
from tqdm import tqdm

from wam.data.lerobot import STAGING, DatasetError, finalize, read_staged_meta, write_staged_episode
from wam.envs import DEFAULT_SUITE, Suite, check_suite_name, get_suite, resolve_tasks
from wam.io import atomic_write_bytes, atomic_write_json, config_dict
from wam.options import CheckedOptions, OptionError

SEED_STRIDE = 1_000_000
MAX_EXPERT_ATTEMPTS = 5
MAX_DEMO_SEED = 100_000_000
VIDEO_SEED_BASE = 30_000_000  # action-free video beside the demonstrations (bench recipes): placements they do not show
HELDOUT_SEED_BASE = 50_000_000  # held-out demonstrations for offline screens: far from training seeds
SYNTHETIC_SEED_BASE = 70_000_000  # the real first frames of dreamed episodes (wam.data.synthetic)
EVAL_SEED_BASE = 1_000_000_000


@dataclass
class CollectConfig(CheckedOptions):
    """Collect scripted-expert demonstrations from a suite (MetaWorld, PushT) into a LeRobotDataset v3 directory."""

    tasks: str
    """Comma-separated tasks of --suite, suite/task names or whole groups, e.g. button-press-topdown-v3,
    metaworld/easy or pusht."""
    episodes: Annotated[int, Ge(1)]
    """Episodes per task."""
    out: Path
    """Dataset directory (created; an unfinished collection there is resumed)."""
    suite: str = DEFAULT_SUITE
    """Simulator suite of the tasks (metaworld, metaworld-lerobot, metaworld-wrist, pusht; see docs/suites.md)."""
    track: Literal["vision", "state"] = "vision"
    """vision: camera image + proprioception (MetaWorld: 64x64 corner2 and hand/gripper; PushT: 96x96 and the
    pusher position); state: the simulator's privileged state (MetaWorld: 39-d; PushT: the T's corners and the
    pusher)."""
    workers: Annotated[int, Ge(1)] = 2
    """Parallel simulator processes."""
    seed: Annotated[int, Ge(0), Le(MAX_DEMO_SEED - 1)] = 0
    """First demonstration seed; evaluation seeds never overlap demonstration seeds."""
    max_steps: Annotated[int | None, Ge(1)] = None
    """Episode cap in control steps; an episode ends at the first success. Default: the suite's (MetaWorld 500,
    PushT 300)."""
    image_size: Annotated[int | None, Ge(16), Le(1024)] = None
    """Side of the square camera image (vision track). Default: the suite's (MetaWorld 64, PushT 96)."""
    max_failed: Annotated[float, Interval(ge=0, le=1)] = 0.1
    """Largest share of a task's episodes the expert may fail (after its retries on new seeds) for the dataset to
    be written; above it the collection stops with the failures listed and the finished episodes kept."""
    video: bool = False
    """Store the camera images as mp4 video (AV1, as LeRobot does by default) instead of PNG frames: about 5x
    smaller on PushT, decoded with a small loss (README: the measured pixel error)."""
    keep_failed: bool = False
    """Write the dataset whatever share of episodes failed. Failed episodes are always marked success=false in
    meta/episodes, and `wam train` skips them unless given --include-failed."""
    ray: bool = False
    """Run the episodes on Ray workers of a local cluster instead of --workers processes (same dataset)."""
    ray_address: str | None = None
    """Run the episodes on an existing Ray cluster, e.g. ray://head:10001 or auto (see the README)."""
    ray_workers: Annotated[int | None, Ge(1)] = None
    """Ray workers; default: the cluster's CPUs."""
    no_actions: bool = False
    """Write action-free video: the episodes keep every observation but no `action` feature (for `wam train
    --video`)."""
    shift: str = "none"
    """Record under the suite's factors of variation (`wam eval --list-shifts`): camera=medium for video from
    another viewpoint, colour=up-to-strong for demonstrations whose colours are randomized per episode (domain
    randomization)."""
    shift_where_applicable: bool = False
    """Apply each factor of --shift only to the tasks it can shift and record the others unshifted by it (e.g.
    displacement moves only loose key objects); without it, a factor that cannot shift one of the tasks is an
    error."""
    action_noise: Annotated[float, Ge(0), Le(2)] = 0.0
    """A non-expert actor: each expert action plus Gaussian noise of this standard deviation, in units of half the
    action range, drawn from the episode's seed. Its episodes are single attempts (no retry on a new seed) and their
    failures are kept: noisy or partial attempts are what such a collection is for."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_suite_name(self.suite)
        if self.seed + self.episodes > MAX_DEMO_SEED:
            raise OptionError(f"--seed must be at most {MAX_DEMO_SEED - self.episodes} with --episodes {self.episodes},"
                              f" got {self.seed}: demonstration seeds stay below {MAX_DEMO_SEED}, apart from the "
                              "evaluation seeds")

    def resolved(self) -> tuple[Suite, list[str], CollectConfig]:
        """The suite, its task names, and this config with the suite's defaults filled in (what the dataset
        records, so that naming a default explicitly resumes the same collection)."""
        suite, tasks = resolve_tasks(self.tasks, self.suite)
        shift = suite.check_shift(self.shift, tasks, self.shift_where_applicable)
        # Recorded only where it changes what is collected, so a collection whose factors shift every task is the
        # same whether or not it was asked for.
        partial = any(suite.task_shift(shift, task) != shift for task in tasks)
        return suite, tasks, replace(self, suite=suite.name, tasks=",".join(tasks), shift=shift,
                                     shift_where_applicable=partial,
                                     max_steps=self.max_steps or suite.max_episode_steps,
                                     image_size=self.image_size or suite.default_image_size)


_ENVS: dict[tuple, Any] = {}  # per worker process: one simulator per task and setting, reused across episodes


def _record_episode(job: tuple[int, str, int, dict[str, Any]]) -> tuple[int, bool]:
    warnings.filterwarnings("ignore", message="Constant.*may be too high")  # MetaWorld's experts, harmless

    episode_index, task, base_seed, cfg = job
    suite = get_suite(cfg["suite"])
    key = (cfg["suite"], task, cfg["track"], cfg["image_size"], cfg["max_steps"], cfg["shift"])
    if key not in _ENVS:
        _ENVS[key] = suite.make_env(task, track=cfg["track"], image_size=cfg["image_size"],
                                    max_episode_steps=cfg["max_steps"], shift=cfg["shift"])
    env = _ENVS[key]
    expert = suite.expert(env)
    low, high = suite.action_bounds()
    noise = cfg["action_noise"] * (high - low) / 2
    for attempt in range(MAX_EXPERT_ATTEMPTS if not cfg["action_noise"] else 1):
        seed = base_seed + attempt * SEED_STRIDE
        rng = np.random.default_rng(seed)
        frames: dict[str, list[Any]] = {k: [] for k in [*cfg["features"], "action"]}
        obs, _ = env.reset(seed=seed)
        expert.reset()
        done = success = False
        while not done:
            truth = env.ground_truth()
            action = expert.select_action(obs)
            if cfg["action_noise"]:
                action = action + noise * rng.standard_normal(action.shape)
            action = np.clip(action, low, high).astype(np.float32)
            for k, v in obs.items():
                frames[k].append(v)
            frames["action"].append(action)
            frames["groundtruth.keypoints_xyz"].append(truth["keypoints_xyz"])
            frames["groundtruth.keypoints_uv"].append(truth["keypoints_uv"])
            obs, reward, success, truncated, _ = env.step(action)
            done = success or truncated
            frames["next.reward"].append(reward)
            frames["next.success"].append(success)
            frames["next.done"].append(done)
        if success:
            break
    meta = {"task": task, "seed": seed, "success": bool(success), "episode_index": episode_index}
    write_staged_episode(Path(cfg["out"]), episode_index, frames, cfg["features"], meta)
    return episode_index, bool(success)


class RemoteRecorder:
    """``_record_episode`` in a Ray worker: the staged episode comes back as bytes (no shared filesystem needed)."""

    def run(self, job: tuple[int, str, int, dict[str, Any]]) -> tuple[int, bool, bytes]:
        episode_index, task, seed, cfg = job
        with tempfile.TemporaryDirectory() as tmp:
            _, success = _record_episode((episode_index, task, seed, {**cfg, "out": tmp}))
            return episode_index, success, (Path(tmp) / STAGING / f"episode-{episode_index:06d}.parquet").read_bytes()


def keep_staged(out: Path, episode_index: int, success: bool, data: bytes) -> tuple[int, bool]:
    """Stage an episode recorded elsewhere, atomically, as ``_record_episode`` would have."""
    atomic_write_bytes(out / STAGING / f"episode-{episode_index:06d}.parquet", data)
    return episode_index, success


def run_collect(cfg: CollectConfig) -> dict[str, Any]:
    """Collect (or finish collecting) the dataset described by ``cfg``; returns its ``meta/info.json``."""
    suite, tasks, cfg = cfg.resolved()
    out = Path(cfg.out)
    # Neither the worker count nor where the directory lives changes the data (a dataset may be moved or linked).
    # Nor does the failure policy: a refused collection is finished with --keep-failed without recording again.
    request = {k: v for k, v in config_dict(cfg).items() if k not in ("workers", "out", "ray", "ray_address",
                                                                     "ray_workers", "max_failed", "keep_failed")}
    # An option added after a collection was made was at its default there (the suite: MetaWorld).
    defaults = {f.name: f.default for f in fields(CollectConfig) if f.default is not MISSING}
    complete = begin_collection(out, "collect_config.json", request, defaults, "a collection")
    if complete is not None:
        return complete

    features = suite.features(cfg.track, cfg.image_size)
    if cfg.no_actions:
        features.pop("action")
    jobs = []
    for episode_index in range(len(tasks) * cfg.episodes):
        staged = out / STAGING / f"episode-{episode_index:06d}.parquet"
        if staged.exists() and read_staged_meta(staged) is not None:
            continue
        task = tasks[episode_index // cfg.episodes]
        jobs.append((episode_index, task, cfg.seed + episode_index % cfg.episodes,
                     {"out": str(out), "suite": suite.name, "track": cfg.track, "image_size": cfg.image_size,
                      "max_steps": cfg.max_steps, "features": features, "shift": suite.task_shift(cfg.shift, task),
                      "action_noise": cfg.action_noise}))
    total = len(tasks) * cfg.episodes
    with ExitStack() as stack:
        if (cfg.ray or cfg.ray_address) and jobs:
            from wam.cluster import fan_out

            results = (keep_staged(out, *result) for result in
                       fan_out(RemoteRecorder, (), [(job,) for job in jobs], cfg.ray_address, cfg.ray_workers))
        elif cfg.workers == 1 or len(jobs) <= 1:
            results = map(_record_episode, jobs)
        else:
            # spawn: each worker owns its own EGL context, which fork would share and break.
            pool = stack.enter_context(mp.get_context("spawn").Pool(min(cfg.workers, len(jobs))))
            results = pool.imap_unordered(_record_episode, jobs)
        with tqdm(total=total, initial=total - len(jobs), desc="collect", unit="ep") as bar:
            for _ in results:
                bar.update()
    failed = check_failures(out, tasks, cfg)
    return finalize(out, features, fps=suite.control_hz, robot_type=suite.robot_type, video=cfg.video,
                    extra_info={"wam": {"suite": suite.name, "track": cfg.track, "tasks": tasks,
                                        "episodes_per_task": cfg.episodes, "seed": cfg.seed,
                                        "failed_episodes": failed, "actions": not cfg.no_actions,
                                        "shift": cfg.shift, "action_noise": cfg.action_noise,
                                        **({"task_shifts": {task: suite.task_shift(cfg.shift, task) for task in tasks}}
                                           if cfg.shift_where_applicable else {})}})


def begin_collection(out: Path, config_name: str, request: dict[str, Any], defaults: dict[str, Any],
                     what: str) -> dict[str, Any] | None:
    """Start the collection ``request`` in ``out`` (recorded in ``meta/<config_name>``) or resume the one there:
    returns its ``meta/info.json`` when it is already complete, else None; ``DatasetError`` when ``out`` holds
    another collection or foreign files. ``defaults`` stand in for options a collection predates."""
    config_path = out / "meta" / config_name
    if config_path.exists():
        previous = {**{k: defaults[k] for k in request if k in defaults},
                    **{k: v for k, v in json.loads(config_path.read_text()).items() if k != "out"}}
        if previous != request:
            diff = {k: (previous.get(k), v) for k, v in request.items() if previous.get(k) != v}
            raise DatasetError(f"{out} holds {what} made with other arguments {diff}; re-run with the same "
                               "arguments to resume it, or choose another --out")
        if (out / "meta/info.json").exists() and not (out / STAGING).exists():
            print(f"{out}: {what} already complete")
            return json.loads((out / "meta/info.json").read_text())
    elif out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not a wam dataset; choose an empty or new --out directory")
    atomic_write_json(config_path, request)
    return None


def check_failures(out: Path, tasks: list[str], cfg: CollectConfig) -> dict[str, int]:
    """Per task, how many staged episodes the expert failed; report them, and refuse (keeping every staged episode)
    when a task's share passes ``--max-failed`` unless ``--keep-failed``."""
    failed = dict.fromkeys(tasks, 0)
    non_expert = cfg.action_noise > 0  # failed attempts are what a non-expert collection is for
    for path in sorted((out / STAGING).glob("episode-*.parquet")):
        meta = read_staged_meta(path)
        if meta is not None and not meta["success"]:
            failed[meta["task"]] += 1
    if not any(failed.values()):
        return failed
    listing = ", ".join(f"{task} {n}/{cfg.episodes}" for task, n in failed.items() if n)
    over = [task for task, n in failed.items() if n > cfg.max_failed * cfg.episodes]
    if non_expert:
        print(f"collect: the noisy actor (--action-noise {cfg.action_noise:g}) failed {listing} episodes; they are "
              "kept and marked success=false")
        return failed
    if over and not cfg.keep_failed:
        raise DatasetError(f"the scripted expert failed too many episodes (after {MAX_EXPERT_ATTEMPTS} seeds each): "
                           f"{listing}; above --max-failed {cfg.max_failed:g} for {', '.join(over)}. The finished "
                           f"episodes are kept in {out / STAGING}: re-run the same command with --keep-failed to "
                           "write them all (training skips the failed ones), or collect other tasks")
    print(f"collect: the scripted expert failed {listing} episodes (after {MAX_EXPERT_ATTEMPTS} seeds each); they "
          "are marked success=false in meta/episodes and `wam train` skips them unless given --include-failed")
    return failed
