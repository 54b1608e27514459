"""Couplings: how the action binds to the predicted future. Each decides which streams the backbone learns and
generates, which it is given, and how the action is read out.

Each coupling registers a builder under its anatomy value in ``COUPLINGS``; a value without one is refused, never
replaced by another coupling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from wam.anatomy import Coupling, SpecError
from wam.backbones import DiffusionBackbone, Stream
from wam.couplings.action_only import ActionOnly
from wam.couplings.base import ACTION, BaseCoupling, Call
from wam.couplings.joint import Joint, PostHead
from wam.couplings.rollout import Rollout

__all__ = ["ACTION", "COUPLINGS", "ActionOnly", "BaseCoupling", "Call", "CouplingSizing", "Joint", "PostHead", "Rollout",
           "build_coupling"]


@dataclass(frozen=True)
class CouplingSizing:
    """What a coupling is built from: the substrate streams it binds and the model config's knobs."""

    futures: tuple[str, ...]
    streams: dict[str, Stream]
    config: object
    """The ``ModelConfig``."""
    context_len: int

    @property
    def joint_knobs(self) -> tuple:
        c = self.config
        return self.futures, c.future_weight, c.future_dropout, c.truncate_steps, c.substrate_first_steps


def _post_head(s: CouplingSizing) -> PostHead:
    c, head = s.config, None
    if c.post_head == "separate":  # a small diffusion inverse-dynamics network reading context and futures
        head = DiffusionBackbone(c.d_model, 2, c.n_heads, s.context_len, s.streams, {ACTION: s.futures},
                                 c.train_timesteps, c.parameterization, c.dropout)
    return PostHead(*s.joint_knobs, head=head)


COUPLINGS: dict[Coupling, Callable[[CouplingSizing], BaseCoupling]] = {
    Coupling.NONE: lambda s: ActionOnly(),
    Coupling.ROLLOUT: lambda s: Rollout(s.futures, s.streams, s.config.d_model, s.config.n_action_steps,
                                        max(1, len(s.config.tasks)), s.config.future_weight),
    Coupling.JOINT: lambda s: Joint(*s.joint_knobs),
    Coupling.POST_HEAD: _post_head,
}
"""Anatomy value -> builder."""


def build_coupling(kind: Coupling, futures: tuple[str, ...], streams: dict[str, Stream], config,
                   context_len: int) -> BaseCoupling:
    """The coupling of kind ``kind`` over the substrate streams ``futures``, with the knobs of ``config``."""
    if kind not in COUPLINGS:
        raise SpecError(f"coupling {kind.value!r} has no registered implementation (registered: "
                        f"{', '.join(k.value for k in COUPLINGS)})")
    return COUPLINGS[kind](CouplingSizing(futures, streams, config, context_len))
