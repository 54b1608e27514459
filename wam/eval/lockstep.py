"""Batched closed-loop evaluation: E environments step in lockstep in worker processes, and at every tick one
model call serves every environment whose policy needs an action.

Each environment slot keeps its own policy (observation history, chunks, and a generator reseeded from each
episode's seed), and the model draws each episode's noise from that episode's generator (``wam.nn.random``), so an
episode's outcome is the one that one-at-a-time evaluation (``EpisodeRunner``) gives for its seed. Policies that
cannot share a call (streaming with its KV cache, adaptive chunking, decoding) still step in lockstep but call the
model one episode at a time; a model whose coupling keeps per-episode state in the model itself (a planner that
proposes around its last plan) is evaluated one episode at a time (``wam eval`` says so).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from wam.deployment import Policy, make_policy
from wam.envs import SUITES, get_suite
from wam.eval.budget import MemoryMeter
from wam.eval.config import EvalConfig
from wam.eval.subject import check_observations
from wam.eval.videos import video_bytes
from wam.model import InferenceConfig, WorldActionModel


class EnvironmentWorkerError(RuntimeError):
    """An environment worker process failed or died; the message says which and why."""


def _serve(conn, suite_name: str, track: str, image_size: int | None, max_steps: int | None, shift: str) -> None:
    """A worker: one environment per task it is asked for, reset and stepped on command."""
    suite = get_suite(suite_name)
    envs: dict[str, Any] = {}
    env = None
    try:
        while True:
            command, argument = conn.recv()
            if command == "reset":
                task, seed = argument
                if task not in envs:
                    envs[task] = suite.make_env(task, track=track, image_size=image_size, max_episode_steps=max_steps,
                                                shift=shift)
                env = envs[task]
                obs, _ = env.reset(seed=seed)
                conn.send(("ok", (obs, {k: list(s.shape) for k, s in env.observation_space.spaces.items()})))
            elif command == "step":
                action, env.render_images = argument
                obs, reward, success, truncated, info = env.step(action)
                conn.send(("ok", (obs, float(reward), bool(success), bool(truncated), info.get("failure"))))
            else:
                break
    except Exception as e:  # reported in the parent as one error
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        for e in envs.values():
            e.close()
        conn.close()


class EnvWorkers:
    """``n`` environments of one suite, each in its own process (MuJoCo's EGL contexts are per thread)."""

    def __init__(self, suite: str, track: str, image_size: int | None, max_steps: int | None, shift: str, n: int):
        # A fork server (started once per process, with the simulator imported) forks workers in milliseconds;
        # plain fork could inherit the parent's rendering contexts, and spawn re-imports everything per worker.
        context = mp.get_context("forkserver")
        context.set_forkserver_preload(["wam.envs", SUITES[suite].split(":")[0]])
        self._pipes, self._processes = [], []
        for _ in range(n):
            parent, child = context.Pipe()
            process = context.Process(target=_serve, args=(child, suite, track, image_size, max_steps, shift),
                                      daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)

    def _exchange(self, commands: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        try:
            for slot, command in commands.items():  # all workers run at once; then collect
                self._pipes[slot].send(command)
            answers = {slot: self._pipes[slot].recv() for slot in commands}
        except (EOFError, OSError):
            dead = [i for i, p in enumerate(self._processes) if not p.is_alive()]
            raise EnvironmentWorkerError(f"environment worker {dead[0] if dead else '?'} died (exit code "
                                         f"{self._processes[dead[0]].exitcode if dead else '?'}); re-run with --envs 1 "
                                         "to see the simulator's own error") from None
        for slot, (status, value) in answers.items():
            if status != "ok":
                raise EnvironmentWorkerError(f"environment worker {slot} failed: {value}")
        return {slot: value for slot, (_, value) in answers.items()}

    def reset(self, jobs: dict[int, tuple[str, int]]) -> dict[int, tuple[dict[str, Any], dict[str, list[int]]]]:
        """Start episode (task, seed) in each given slot: its first observation and observation shapes."""
        return self._exchange({slot: ("reset", job) for slot, job in jobs.items()})

    def step(self, actions: dict[int, tuple[np.ndarray, bool]]
             ) -> dict[int, tuple[dict[str, Any], float, bool, bool, str | None]]:
        """One step in each given slot with (action, whether to render the image): observation, reward, success,
        truncated, and the failure tag of an episode that ended without success."""
        return self._exchange({slot: ("step", action) for slot, action in actions.items()})

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


@dataclass
class EpisodeProgress:
    """One episode under way, and its record once it ends (the format of every closed-loop runner)."""

    task: str
    j: int
    seed: int
    obs: dict[str, Any]
    start: float
    calls_before: int
    frames: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False
    steps: int = 0
    failure: str | None = None
    """What went wrong, from the suite's ``failure_tags``, when the episode ended without success."""

    def end_step(self, obs: dict[str, Any], reward: float, success: bool, truncated: bool,
                 failure: str | None) -> bool:
        """Take one step's outcome; whether the episode has ended."""
        self.obs, self.success, self.failure = obs, success, failure
        self.rewards.append(reward)
        self.steps += 1
        return success or truncated

    def record(self, policy: Policy, peak_memory_mb: float, control_hz: float) -> dict[str, Any]:
        """Outcome, model calls (seconds each, from ``policy``, which played the episode), what the policy measured
        in it, and the video (mp4 bytes) if frames were kept."""
        latencies = policy.call_latencies[self.calls_before:]
        return {"task": self.task, "j": self.j, "seed": self.seed, "success": bool(self.success),
                "failure": None if self.success else self.failure, "steps": self.steps,
                "model_calls": len(latencies), "sum_reward": float(np.sum(self.rewards)),
                "max_reward": float(np.max(self.rewards)), "time_s": time.perf_counter() - self.start,
                "call_latencies": latencies, "peak_memory_mb": peak_memory_mb,
                "video": video_bytes(self.frames, control_hz) if self.frames else None, **policy.episode_extras()}


class LockstepRunner:
    """Seeded closed-loop episodes of one model, ``envs`` at a time in lockstep, with batched model calls."""

    def __init__(self, cfg: EvalConfig, model: WorldActionModel, inference: InferenceConfig, envs: int):
        self.cfg, self.model, self.inference = cfg, model, inference
        self.suite = get_suite(model.config.suite)
        self.track = self.suite.track_of(model.config.observation_shapes)
        self.policies: list[Policy] = [make_policy(model, cfg.deploy, seed=cfg.seed, inference=inference)
                                       for _ in range(envs)]
        self.policy = self.policies[0]
        self.memory = MemoryMeter()
        size = model.config.observation_shapes[self.suite.image_key][0] if self.track == "vision" else None
        self.workers = EnvWorkers(self.suite.name, self.track, size, cfg.max_steps, cfg.shift, envs)
        self.rows_per_call: list[int] = []

    def run(self, jobs: list[tuple[str, int, int]], done=None) -> list[dict[str, Any]]:
        """The records of ``jobs`` (task, index, seed) in job order; ``done(record)`` after each episode.

        Episodes start only at ticks that are multiples of the policies' replanning period K, so that every
        episode under way replans at the same ticks and one call serves them all: a slot whose episode ended
        waits up to K - 1 ticks (no simulator time: it is not stepped), where starting at once would put its
        calls out of phase with the others' for the rest of its episode. Outcomes do not depend on when an
        episode starts."""
        queue, records, active = deque(enumerate(jobs)), {}, {}
        policy = self.policies[0]
        period = policy.replan_period if policy.batchable else 1
        free, tick = list(range(len(self.policies))), 0
        while queue or active:
            if free and queue and tick % period == 0:
                self._start(queue, active, free)
                free = [slot for slot in free if slot not in active]
            if not active:  # every slot waits for the next start: skip to it
                tick += -tick % period
                continue
            actions = self._act(active)
            results = self.workers.step(actions)
            self.memory.sample()
            finished = [slot for slot, outcome in results.items() if active[slot][1].end_step(*outcome)]
            for slot in finished:
                index, episode = active.pop(slot)
                records[index] = self._record(slot, episode)
                if done:
                    done(records[index])
            free += finished
            tick += 1
        return [records[i] for i in range(len(jobs))]

    def _start(self, queue: deque, active: dict[int, tuple[int, EpisodeProgress]], slots) -> None:
        starting = {slot: queue.popleft() for slot in slots if queue}
        answers = self.workers.reset({slot: (task, seed) for slot, (_, (task, _, seed)) in starting.items()})
        for slot, (index, (task, j, seed)) in starting.items():
            obs, shapes = answers[slot]
            check_observations(self.model, self.track, shapes)
            policy = self.policies[slot]
            policy.reset(seed=seed)
            active[slot] = (index, EpisodeProgress(task, j, seed, obs, time.perf_counter(), len(policy.call_latencies)))

    def _recording(self, episode: EpisodeProgress) -> bool:
        return episode.j < self.cfg.video and self.track == "vision"

    def _act(self, active: dict[int, tuple[int, EpisodeProgress]]) -> dict[int, tuple[np.ndarray, bool]]:
        """Every active slot's next action, and whether its next image is read; the slots that need a model call
        share one where their policies can."""
        shared = []
        for slot, (_, episode) in active.items():
            if self._recording(episode):
                episode.frames.append(episode.obs[self.suite.image_key])
            episode.obs["task"] = self.suite.instruction(episode.task)
            policy = self.policies[slot]
            if policy.batchable and policy.observe(episode.obs):
                shared.append(slot)
        if shared:
            self._call([self.policies[s] for s in shared])
        actions = {}
        for slot, (_, episode) in active.items():
            policy = self.policies[slot]
            action = policy.next_action() if policy.batchable else policy.select_action(episode.obs)
            actions[slot] = (action, self._recording(episode) or policy.needs_next_image())
        return actions

    def _call(self, policies: list[Policy]) -> None:
        requests = [p.request() for p in policies]
        batch: dict[str, Any] = {k: torch.cat([r[k] for r in requests]) for k in requests[0] if k != "task"}
        batch["task"] = [t for r in requests for t in r["task"]]
        start = time.perf_counter()
        chunks = self.model.act(batch, generator=[p.generator for p in policies], inference=self.inference)
        chunks = chunks.cpu().numpy()
        seconds = time.perf_counter() - start
        self.rows_per_call.append(len(policies))
        for policy, chunk in zip(policies, chunks):
            policy.receive(chunk, seconds)

    def _record(self, slot: int, episode: EpisodeProgress) -> dict[str, Any]:
        return episode.record(self.policies[slot], self.memory.peak_mb, self.suite.control_hz)

    def close(self) -> None:
        self.workers.close()
