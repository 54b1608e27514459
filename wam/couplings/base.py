"""The coupling contract: which streams a backbone learns and generates, who reads whom, and how the action is read.

``futures`` are the names of the substrate streams (``future.<kind>``; several for a conjunction). ``reads`` and
``order`` go to the backbone (attention rules; serialization order for sequential backbones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from wam.couplings.planners import PlannerConfig

ACTION = "action"
FutureMode = Literal["skip", "predict", "truncate"]


@dataclass(frozen=True)
class Call:
    """What one model call asks of a coupling (``WorldActionModel`` builds it from an ``InferenceConfig``)."""

    steps: int
    """Sampler steps."""
    future: FutureMode = "skip"
    """Joint and post-head couplings: skip the future stream, generate it, or give it only ``truncate_steps``."""
    lengths: Mapping[str, int] = field(default_factory=dict)
    """Tokens to generate per future stream, for a shortened prediction horizon (absent: all)."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Rollout coupling: proposal, planner, objective and their sizes."""


class BaseCoupling(nn.Module):
    """Base class; the default is the VLA case (no future). Subclasses override ``reads``/``order`` and the methods."""

    plans = False
    """Whether it acts by rolling candidate chunks out through the forward model and scoring them: a planner's
    knobs apply, its objective can rank any chunk, and per-task goals are fitted after training."""
    label_keys: tuple[str, ...] = ()
    """Dataset features its objective heads learn from, read at the last future offset."""
    learns_from_video = False
    """Whether its future streams can learn from windows without actions (action-free video): so when the future
    is modelled without the action as an input, ``p(s | c)``. A forward model ``p(s | c, a)`` cannot, nor a
    coupling without a future."""
    infers_actions = False
    """Whether it models the action given the future, ``p(a | c, s)`` (inverse dynamics: the action stream reads
    clean future streams), so it can label frames it did not act in (``WorldActionModel.inverse``)."""

    def __init__(self, futures: tuple[str, ...] = ()):
        super().__init__()
        self.futures = tuple(futures)

    @property
    def reads(self) -> dict[str, tuple[str, ...]]:
        return {}

    @property
    def acts_from_backbone(self) -> bool:
        """Whether the action is sampled from the backbone alone (a cached context can then stream through it);
        not so for a planner or a separate action head."""
        return True

    @property
    def order(self) -> tuple[str, ...]:
        return (ACTION, *self.futures)

    def loss(self, backbone, context: torch.Tensor, action: torch.Tensor, futures: dict[str, torch.Tensor],
             step: int | None = None, labels: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Loss parts; ``step`` drives weight schedules, ``labels`` (progress, success) train objective heads."""
        raise NotImplementedError

    def video_loss(self, backbone, context: torch.Tensor, futures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss parts of windows without actions: the future streams alone (only where ``learns_from_video``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot learn from action-free video")

    def inverse(self, backbone, context: torch.Tensor, futures: dict[str, torch.Tensor], call: Call,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The action chunk (normalized) that leads from the context to the given futures (only where
        ``infers_actions``)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse dynamics")

    def inverse_loss(self, backbone, context: torch.Tensor, action: torch.Tensor,
                     futures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss parts of the inverse dynamics ``p(a | c, s)``: the action chunk (normalized) beside the clean futures
        it led to (only where ``infers_actions``)."""
        raise NotImplementedError(f"{type(self).__name__} has no inverse dynamics")

    def act(self, backbone, context: torch.Tensor, call: Call, generator: torch.Generator | None = None,
            task: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The action chunk (normalized) and whatever futures were generated on the way; ``task`` (indices into
        the training tasks) selects a planner's goal."""
        raise NotImplementedError

    def predict(self, backbone, context: torch.Tensor, call: Call, actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def has_future_stream(self) -> bool:
        """Whether its action may read a generated future stream (``Call.future`` other than skip applies)."""
        return False

    def keeps_episode_state(self, planner) -> bool:
        """Whether acting under ``planner`` reads state left by the episode's earlier calls (then the calls of
        several episodes cannot share one batched call)."""
        return False

    def reset(self) -> None:
        """Forget per-episode state (a planner's last plan)."""


def dropout_mask(futures: tuple[str, ...], rate: float, context: torch.Tensor) -> dict[tuple[str, str], torch.Tensor]:
    """Hide every future from the action in a fraction ``rate`` of the samples (one draw per sample)."""
    hidden = torch.rand(context.shape[0], device=context.device) < rate
    return {(ACTION, f): hidden for f in futures}
