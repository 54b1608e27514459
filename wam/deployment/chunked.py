"""Chunked closed-loop deployment: call the model every K steps and execute the first K actions of its chunk.

``C = ceil(T / K) * N_fwd(K)``; single-step closed loop is the case ``K = 1`` and open loop the case ``K = H``.

- **Temporal ensembling** (ACT): every chunk that covers the current step votes for its action, with weight
  ``exp(-m * i)`` where ``i = 0`` is the oldest chunk, so replanning every K < H steps smooths the motion.
- **Adaptive chunking** (``AdaptivePolicy``): run up to K actions of a chunk, but at every step for which the model
  predicted the future (its ``future_offsets``) compare what it predicted with what it now observes, in its own
  substrate space, and replan at once when the surprise exceeds a threshold. Calls go where the world surprised
  the model; where it did not, the chunk runs on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wam.deployment.base import Policy
from wam.model import InferenceConfig, WorldActionModel


class ChunkedPolicy(Policy):
    """Replans every ``n_action_steps`` (K) steps; with ``ensemble = m`` overlapping chunks are averaged."""

    keeps_futures = False  # whether select_action needs the predicted future of every chunk

    def __init__(self, model: WorldActionModel, n_action_steps: int | None = None, seed: int = 0,
                 ensemble: float | None = None, decode: bool = False, inference: InferenceConfig | None = None):
        super().__init__(model, seed, inference)
        if decode and not any(s.has_decoder for s in model.substrates.values()):
            raise ValueError(f"substrate {model.config.spec.substrate!r} has no decoder; --decode needs a pixel, "
                             "token, geometric or affordance substrate")
        if decode and model.coupling.has_future_stream and self.inference.future == "skip":
            raise ValueError("--decode decodes the predicted future, but this model skips it; add --future predict")
        self.decode = decode
        self.n_action_steps = model.config.n_action_steps if n_action_steps is None else n_action_steps
        if not 1 <= self.n_action_steps <= model.config.horizon:
            raise ValueError(f"K={self.n_action_steps} must lie in [1, horizon={model.config.horizon}]")
        if ensemble is not None and ensemble < 0:
            raise ValueError(f"temporal ensembling weight m={ensemble} must be >= 0 (ACT uses 0.01)")
        self.ensemble = ensemble
        # Calls of several episodes batch when a call is a plain act whose outcome depends only on its own inputs.
        self.batchable = not (decode or self.keeps_futures or model.coupling.keeps_episode_state(self.inference.planner))
        self.reset()

    @property
    def replan_period(self) -> int:
        return self.n_action_steps

    @property
    def min_actions_per_call(self) -> int:
        return self.n_action_steps

    def knobs(self) -> dict[str, Any]:
        return {**super().knobs(), "n_action_steps": self.n_action_steps, "ensemble": self.ensemble,
                "decode": self.decode}

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._step = 0
        self._chunks: list[tuple[int, np.ndarray]] = []  # (step at which it was planned, actions)

    def _plan(self) -> np.ndarray:
        def call() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            if not (self.decode or self.keeps_futures):
                return self.model.act(self._batch(), generator=self.generator, inference=self.inference), {}
            actions, futures = self.model.plan(self._batch(), generator=self.generator, inference=self.inference)
            if self.decode:
                self.model.decode(futures)
            return actions, futures

        actions, self._futures = self._timed(call)
        return actions[0].cpu().numpy()

    def _replan_now(self) -> bool:
        return not self._chunks or self._step - self._chunks[-1][0] >= self.n_action_steps

    def needs_next_image(self) -> bool:
        # The next call, K steps after the last, reads the last n_obs observations; the ones before it go unread.
        next_call = self._chunks[-1][0] + self.n_action_steps if self._chunks else self._step
        return next_call - self._step < self.model.config.n_obs

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        if self.observe(observation):
            self._chunks.append((self._step, self._plan()))
        return self.next_action()

    def observe(self, observation: dict[str, Any]) -> bool:
        self._remember(observation)
        return self._replan_now()

    def receive(self, actions: np.ndarray, seconds: float) -> None:
        self.call_latencies.append(seconds)
        self._chunks.append((self._step, actions))

    def next_action(self) -> np.ndarray:
        # Chunks that still cover this step (all of them when ensembling, else only the newest).
        live = [(s, c) for s, c in self._chunks if self._step - s < len(c)]
        if self.ensemble is None:
            live = live[-1:]
        self._chunks = live
        actions = np.stack([c[self._step - s] for s, c in live])
        weights = np.exp(-self.ensemble * np.arange(len(live))) if self.ensemble is not None else np.ones(1)
        self._step += 1
        return (weights[:, None] * actions).sum(0) / weights.sum()


class AdaptivePolicy(ChunkedPolicy):
    """Chunked with a surprise trigger: replan before K steps when the observation departs from the prediction.

    The surprise at a checked step is ``||predicted - observed||^2 / ||observed||^2`` in the model's substrate space
    (the observed frame is turned into substrate tokens the same way the training targets are), averaged over that
    step's tokens; for discrete codes it is the fraction of codes that differ. Checks happen at the model's future
    offsets below K, so a model trained with offsets (4, 8, 12, 16) can replan after 4, 8 or 12 steps.
    """

    regime = "adaptive"
    keeps_futures = True

    def __init__(self, model: WorldActionModel, n_action_steps: int | None = None, seed: int = 0,
                 threshold: float = 0.5, decode: bool = False, inference: InferenceConfig | None = None):
        if not model.substrates:
            raise ValueError("adaptive chunking compares observations with predicted futures, and a model with "
                             "substrate 'none' predicts none; use chunked deployment")
        for substrate in model.substrates.values():
            if not substrate.observable:
                substrate.observe(None)  # raises the substrate's own explanation
        inference = inference or model.default_inference
        if model.coupling.has_future_stream and inference.future == "skip":
            inference = model.inference(future="predict", base=inference)  # the surprise needs the prediction
        super().__init__(model, model.config.horizon if n_action_steps is None else n_action_steps, seed, decode=decode,
                         inference=inference)
        self.threshold = threshold
        horizon = model.config.future_offsets[:self.inference.future_horizon]  # offsets the model still predicts
        self.checks = [k for k in horizon if k < self.n_action_steps]
        if not self.checks:
            raise ValueError(f"no future offset of the model {model.config.future_offsets} lies before K="
                             f"{self.n_action_steps}, so nothing can trigger an early replan; raise K")
        self.early_replans = 0
        self.surprises: list[float] = []

    @property
    def replan_period(self) -> int:
        return 1  # a surprise may trigger a replan at any check

    @property
    def min_actions_per_call(self) -> int:
        return self.checks[0]

    def knobs(self) -> dict[str, Any]:
        quantiles = {f"p{q}": float(np.percentile(self.surprises, q)) for q in (25, 50, 75, 90)} if self.surprises else {}
        return {**super().knobs(), "surprise_threshold": self.threshold, "checks": self.checks,
                "early_replans": self.early_replans, "surprise_quantiles": quantiles}

    def needs_next_image(self) -> bool:
        return True  # every step may be a check against the predicted future

    def _replan_now(self) -> bool:
        if super()._replan_now():
            return True
        age = self._step - self._chunks[-1][0]
        if age not in self.checks:
            return False
        index = list(self.model.config.future_offsets).index(age)
        surprise = self.model.surprise(self._futures, self._batch(), index)
        self.surprises.append(surprise)
        if surprise > self.threshold:
            self.early_replans += 1
            return True
        return False
