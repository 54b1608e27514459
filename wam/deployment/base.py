"""What every deployment policy shares: the observation history, timed model calls and the regime record.

A policy is gymnasium-facing in LeRobot's shape: ``reset()`` at episode start, ``select_action(observation) ->
action``. It owns timing (every model call is measured) and never changes the loaded model (an adapting policy,
``wam.deployment.adaptation``, trains a copy of its own).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from wam.model import InferenceConfig, WorldActionModel

T = TypeVar("T")


def history_batch(history: Sequence[dict[str, Any]], keys: Sequence[str], instruction: str) -> dict[str, Any]:
    """Observations (oldest first) as a model batch of one: ``{key: [1, len(history), ...]}`` plus the instruction."""
    batch: dict[str, Any] = {k: torch.from_numpy(np.stack([np.asarray(o[k]) for o in history]))[None] for k in keys}
    batch["task"] = [instruction]
    return batch


class Policy:
    """Base class: keeps the last ``n_obs`` observations and times every model call."""

    regime = "chunked"
    batchable = False
    """Whether one model call may serve this policy together with other episodes' (``wam.eval.lockstep``; see
    ``observe``)."""

    def __init__(self, model: WorldActionModel, seed: int = 0, inference: InferenceConfig | None = None):
        self.model = model.eval()
        self.inference = inference or model.default_inference
        """The run-time knobs of every call (sampler steps, future, horizon, planner); the model stays as loaded."""
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.call_latencies: list[float] = []  # seconds per model call, over the policy's lifetime
        self._history: deque[dict[str, Any]] = deque(maxlen=model.config.n_obs)

    @property
    def replan_period(self) -> int:
        """Steps between model calls when the policy calls at a fixed rate (1: at any step), counted from the
        episode's first step; batched evaluation starts episodes in phase with it."""
        return 1

    @property
    def min_actions_per_call(self) -> int:
        """The fewest actions a call may have to cover: what the feasibility test at the control rate divides by."""
        return 1

    def knobs(self) -> dict[str, Any]:
        """The regime and its settings, for ``eval_info.json`` (the model's knobs are ``self.inference``)."""
        return {"regime": self.regime}

    def episode_extras(self) -> dict[str, Any]:
        """What the policy measured in the episode under way, for the episode's record in ``eval_info.json``."""
        return {}

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; with ``seed``, its sampling no longer depends on the episodes before it (so episodes can
        run in any order or on other workers with the same outcome)."""
        if seed is not None:
            self.generator.manual_seed(seed)
        self.model.reset()  # per-episode model state, such as a planner's last plan
        self._history.clear()

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """The next action for a raw environment observation (with its ``task`` instruction)."""
        raise NotImplementedError

    # A batchable policy splits select_action into these steps, so that one model call can serve many episodes:
    # ``if observe(obs): receive(<the model's answer to request()>, seconds)``, then ``next_action()``.
    def observe(self, observation: dict[str, Any]) -> bool:
        """Take the observation; True when the next action needs a model call first."""
        raise NotImplementedError

    def request(self) -> dict[str, Any]:
        """The model input of the call ``observe`` asked for: a batch of one."""
        return self._batch()

    def receive(self, actions: np.ndarray, seconds: float) -> None:
        """The called model's action chunk ``[H, d_a]`` for this episode, and how long the call took."""
        raise NotImplementedError

    def next_action(self) -> np.ndarray:
        raise NotImplementedError

    def needs_next_image(self) -> bool:
        """Whether the camera image of the next observation will be read (else the environment may skip it)."""
        return True

    def _remember(self, observation: dict[str, Any]) -> None:
        self._history.append(observation)
        while len(self._history) < self._history.maxlen:  # first step: repeat, as the training windows do
            self._history.appendleft(observation)

    def _batch(self) -> dict[str, Any]:
        return history_batch(self._history, self.model.observation_keys, self._history[-1]["task"])

    def _timed(self, call: Callable[[], T]) -> T:
        start = time.perf_counter()
        out = call()
        self.call_latencies.append(time.perf_counter() - start)
        return out
