"""Couplings: how the action binds to the predicted future. Each decides which streams the backbone learns and
generates, which it is given, and how the action is read out."""

from __future__ import annotations

from wam.anatomy import Coupling
from wam.backbones import DiffusionBackbone, Stream
from wam.couplings.action_only import ActionOnly
from wam.couplings.base import ACTION, BaseCoupling
from wam.couplings.joint import Joint, PostHead
from wam.couplings.rollout import Rollout

__all__ = ["ACTION", "ActionOnly", "BaseCoupling", "Joint", "PostHead", "Rollout", "build_coupling"]


def build_coupling(kind: Coupling, futures: tuple[str, ...], streams: dict[str, Stream], config,
                   context_len: int) -> BaseCoupling:
    """The coupling of kind ``kind`` over the substrate streams ``futures``, with the knobs of ``config``."""
    if kind is Coupling.NONE:
        return ActionOnly()
    if kind is Coupling.ROLLOUT:
        return Rollout(futures, streams, config.d_model, config.planner, config.n_action_steps,
                       max(1, len(config.tasks)), config.future_weight)
    knobs = (futures, config.future_weight, config.future_dropout, config.future_at_inference, config.truncate_steps,
             config.substrate_first_steps)
    if kind is Coupling.JOINT:
        return Joint(*knobs)
    head = None
    if config.post_head == "separate":  # a small diffusion inverse-dynamics network reading context and futures
        head = DiffusionBackbone(config.d_model, 2, config.n_heads, context_len, streams, {ACTION: futures},
                                 config.train_timesteps, config.parameterization, config.dropout)
    return PostHead(*knobs, head=head)
