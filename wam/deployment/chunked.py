"""Chunked closed-loop deployment: call the model every K steps and execute the first K actions of its chunk.

``C = ceil(T / K) * N_fwd(K)``; single-step closed loop is the case ``K = 1``. The wrapper owns timing (every
model call is measured) and never changes weights. It is a gymnasium-facing policy in LeRobot's shape:
``reset()`` at episode start, ``select_action(observation) -> action``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
import torch

from wam.model import WorldActionModel


class ChunkedPolicy:
    """Turns a ``WorldActionModel`` into a policy that replans every ``n_action_steps`` (K) steps."""

    def __init__(self, model: WorldActionModel, n_action_steps: int | None = None, seed: int = 0):
        self.model = model.eval()
        self.n_action_steps = n_action_steps or model.config.n_action_steps
        if not 1 <= self.n_action_steps <= model.config.horizon:
            raise ValueError(f"K={self.n_action_steps} must lie in [1, horizon={model.config.horizon}]")
        self.generator = torch.Generator(device=model.device).manual_seed(seed)
        self.call_latencies: list[float] = []  # seconds per model call, over the policy's lifetime
        self.reset()

    def reset(self) -> None:
        self.model.reset()  # per-episode model state, such as a planner's last plan
        self._history: deque[dict[str, Any]] = deque(maxlen=self.model.config.n_obs)
        self._actions: deque[np.ndarray] = deque()

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        """The next action for a raw environment observation (with its ``task`` instruction)."""
        self._history.append(observation)
        while len(self._history) < self._history.maxlen:  # first step: repeat, as the training windows do
            self._history.appendleft(observation)
        if not self._actions:
            batch = {k: torch.from_numpy(np.stack([np.asarray(o[k]) for o in self._history]))[None]
                     for k in self.model.observation_keys}
            batch["task"] = [observation["task"]]
            start = time.perf_counter()
            chunk = self.model.act(batch, generator=self.generator)[0].cpu().numpy()
            self.call_latencies.append(time.perf_counter() - start)
            self._actions.extend(chunk[: self.n_action_steps])
        return self._actions.popleft()
