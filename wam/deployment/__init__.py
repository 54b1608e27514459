"""Deployment: runtime wrappers that turn a trained model into a policy and own its timing."""

from __future__ import annotations

from wam.anatomy import Deployment
from wam.deployment.chunked import ChunkedPolicy
from wam.model import WorldActionModel


def make_policy(model: WorldActionModel, n_action_steps: int | None = None, seed: int = 0) -> ChunkedPolicy:
    """The policy for the model's deployment regime: chunked replans every K steps, single-step every step, and
    open-loop executes the whole predicted horizon before it looks again (K = H)."""
    regime = model.config.spec.deployment
    fixed = {Deployment.SINGLE_STEP: 1, Deployment.OPEN_LOOP: model.config.horizon}.get(regime)
    if fixed is not None:
        if n_action_steps not in (None, fixed):
            raise ValueError(f"{regime.value} deployment executes {fixed} action(s) per call; got K={n_action_steps}")
        n_action_steps = fixed
    return ChunkedPolicy(model, n_action_steps, seed=seed)


__all__ = ["ChunkedPolicy", "make_policy"]
