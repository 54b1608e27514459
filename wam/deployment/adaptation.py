"""Test-time adaptation: a chunked policy that keeps training its world model's own objective during the episode.

Under a declared shift (a moved camera, other light) the observation encoder sees images unlike its training data.
The frames the robot has already seen, and the actions it took between them, carry a training signal that needs
no expert: before every replan the policy takes a few gradient steps on the observation encoder of its own copy of
the model, over the newest windows whose future the episode has already shown, then acts with the adapted encoder.
Two objectives, both what a design with a future stream has and a VLA has not:

- ``future``: the future streams' loss ``p(s | c)`` (``WorldActionModel.video_loss``, as on action-free video):
  predict what the episode then showed;
- ``inverse``: the inverse dynamics ``p(a | c, s)`` (``WorldActionModel.inverse_loss``): the executed action chunk
  beside the future it led to, as in Hansen et al. 2021 ("Self-Supervised Policy Adaptation during Deployment"),
  whose inverse-dynamics head is here the model's own action stream read with a clean future.

Every episode starts again from the trained weights (episodic adaptation), so episodes stay independent and
reproducible from their seeds; the loaded model is never changed. A model can adapt when its future targets are
observations a deployed robot sees (substrates trained on simulator ground truth or on codes cached from the
training data cannot) and it has the objective's conditional (a future model without the action for ``future``,
an action stream that reads the future for ``inverse``). The time spent adapting counts in the latency of the call
it precedes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from wam.deployment.chunked import ChunkedPolicy
from wam.model import InferenceConfig, WorldActionModel


@dataclass(frozen=True)
class Adaptation:
    """How an episode adapts: ``steps`` Adam steps at ``lr`` of ``objective`` before every replan, each over the
    ``windows`` newest windows whose future has been observed."""

    steps: int
    lr: float
    windows: int
    objective: Literal["future", "inverse"] = "future"


def adaptation_refusal(model: WorldActionModel, objective: str) -> str | None:
    """Why ``model`` cannot adapt at test time with ``objective`` (None when it can)."""
    if not model.substrates:
        return "a VLA (substrate 'none') predicts no future to learn from"
    if objective == "future" and not model.learns_from_video:
        return (f"substrate {model.config.spec.substrate!r} with coupling {model.config.spec.coupling.value!r} has no "
                "future model without the action (a forward model p(s | c, a) needs the action labels)")
    if objective == "inverse" and (why := model.inverse_refusal()) is not None:
        return f"it has no inverse dynamics: {why}"
    unseen = [k for k in model.future_keys if k not in model.observation_keys and k not in model.coupling.label_keys]
    if unseen:
        return (f"its future targets {', '.join(unseen)} are simulator ground truth or codes cached from the training "
                "data, not observations")
    return None


class AdaptingPolicy(ChunkedPolicy):
    """Chunked deployment with episodic test-time adaptation of the observation encoder (see the module)."""

    def __init__(self, model: WorldActionModel, adaptation: Adaptation, n_action_steps: int | None = None,
                 seed: int = 0, ensemble: float | None = None, decode: bool = False,
                 inference: InferenceConfig | None = None):
        why = adaptation_refusal(model, adaptation.objective)
        if why is not None:
            raise ValueError(f"this model cannot adapt at test time: {why}")
        own = copy.deepcopy(model).requires_grad_(False)  # the loaded model stays as trained
        own.encoder.requires_grad_(True)
        self.adaptation = adaptation
        self._trained = {k: v.detach().clone() for k, v in own.encoder.state_dict().items()}
        self._seed = seed
        self.adaptation_losses: list[float] = []  # the objective on each call's windows before its first step
        self._episode_start = 0  # where the episode under way begins in adaptation_losses (reset moves it)
        super().__init__(own, n_action_steps, seed, ensemble, decode, inference)
        self.batchable = False  # every episode adapts its own weights

    def knobs(self) -> dict[str, Any]:
        return {**super().knobs(), "adaptation": asdict(self.adaptation)}

    def episode_extras(self) -> dict[str, Any]:
        losses = self.adaptation_losses[self._episode_start:]
        return {"adaptation_loss": float(np.mean(losses)) if losses else None}

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._episode_start = len(self.adaptation_losses)
        if seed is not None:
            self._seed = seed
        self.model.encoder.load_state_dict(self._trained)
        self._optimizer = torch.optim.Adam(self.model.encoder.parameters(), lr=self.adaptation.lr)
        self._frames: list[dict[str, np.ndarray]] = []
        self._actions: list[np.ndarray] = []  # executed, one per frame but the newest

    def needs_next_image(self) -> bool:
        return True  # every frame is a future of some window

    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        self._frames.append({k: np.asarray(observation[k]) for k in self.model.observation_keys})
        self._task = observation["task"]
        action = super().select_action(observation)
        self._actions.append(action)
        return action

    def _plan(self) -> np.ndarray:
        start = time.perf_counter()
        self._adapt()
        spent = time.perf_counter() - start
        actions = super()._plan()
        self.call_latencies[-1] += spent  # adapting is part of what this call costs the robot
        return actions

    def _windows(self) -> dict[str, Any] | None:
        """The newest windows of the episode so far whose future was observed (and, for ``inverse``, whose action
        chunk was executed), laid out as the training windows are; None before there is one."""
        offsets, n_obs, horizon = self.model.config.future_offsets, self.model.config.n_obs, self.model.config.horizon
        newest = len(self._frames) - 1 - max(offsets)
        if self.adaptation.objective == "inverse":
            newest = min(newest, len(self._actions) - horizon)
        if newest < 0:
            return None
        anchors = range(max(0, newest - self.adaptation.windows + 1), newest + 1)
        batch: dict[str, Any] = {"task": [self._task] * len(anchors)}
        if self.adaptation.objective == "inverse":
            batch["action"] = torch.from_numpy(np.stack([np.stack(self._actions[s:s + horizon])
                                                         for s in anchors]).astype(np.float32))
        for key in self.model.observation_keys:
            # The history repeats the first frame before the episode's start, as the training windows do.
            batch[key] = torch.from_numpy(np.stack([np.stack([self._frames[max(0, s - i)][key]
                                                              for i in reversed(range(n_obs))]) for s in anchors]))
            batch[f"future.{key}"] = torch.from_numpy(np.stack([np.stack([self._frames[s + k][key] for k in offsets])
                                                                for s in anchors]))
        return batch

    def _adapt(self) -> None:
        batch = self._windows()
        if batch is None or not self.adaptation.steps:
            return
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        first = None
        # The loss's own draws (diffusion noise and times) come from a stream seeded by the episode and step alone,
        # so an adapted episode does not depend on what ran before it or beside it.
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed((self._seed << 16) + self._step)
            for _ in range(self.adaptation.steps):
                loss, _ = (self.model.video_loss if self.adaptation.objective == "future"
                           else self.model.inverse_loss)(batch)
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()
                first = loss.detach() if first is None else first
        self.adaptation_losses.append(float(first))
