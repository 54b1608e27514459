"""Deployment: runtime wrappers that turn a trained model into a policy and own its timing."""

from __future__ import annotations

from wam.anatomy import Deployment
from wam.deployment.chunked import ChunkedPolicy
from wam.model import WorldActionModel


def make_policy(model: WorldActionModel, n_action_steps: int | None = None, seed: int = 0) -> ChunkedPolicy:
    """The policy for the model's deployment regime: chunked replans every K steps, single-step every step."""
    regime = model.config.spec.deployment
    if regime is Deployment.SINGLE_STEP:
        if n_action_steps not in (None, 1):
            raise ValueError(f"single-step deployment executes one action per call; got K={n_action_steps}")
        n_action_steps = 1
    return ChunkedPolicy(model, n_action_steps, seed=seed)


__all__ = ["ChunkedPolicy", "make_policy"]
