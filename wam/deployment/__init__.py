"""Deployment: runtime wrappers that turn a trained model into a policy and own its timing.

Regimes (the fourth axis of the 4-tuple, plus the runtime dials that trade generated future for time):

- ``open-loop``: one call plans the whole horizon, then executes it (K = H);
- ``chunked``: replan every K steps, optionally with temporal ensembling of overlapping chunks (``ensemble``), or
  adaptively (``surprise``): up to K steps, replanning early when the observation departs from the prediction;
- ``single-step``: one call per step; autoregressive backbones stream their context through a sliding-window KV
  cache (``kv_cache``), other backbones are chunked with K = 1;
- ``interactive``: the model runs in lockstep with the world: every step it imagines what comes next and acts,
  and the real observation then takes the imagined one's place (single-step with the future predicted); without
  the world, ``wam.deployment.dream.DreamEnv`` steps the same model as a simulator.

Chunked and open-loop policies may also adapt at test time (``wam.deployment.adaptation``): before every replan a
few gradient steps of the world model's own future loss on the frames the episode has shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from annotated_types import Ge, Gt

from wam.anatomy import Deployment
from wam.deployment.adaptation import Adaptation, AdaptingPolicy
from wam.deployment.base import Policy
from wam.deployment.chunked import AdaptivePolicy, ChunkedPolicy
from wam.deployment.streaming import StreamingPolicy
from wam.model import InferenceConfig, WorldActionModel


@dataclass
class DeploymentConfig:
    """How a model is run in the loop; every field defaults to the model's own setting."""

    deployment: Literal["open-loop", "chunked", "single-step", "interactive"] | None = None
    """Deployment regime; default: the one in the model's 4-tuple."""
    n_action_steps: Annotated[int | None, Ge(1)] = None
    """Actions executed per model call (K) under chunked deployment (the longest run between calls when adaptive)."""
    ensemble: Annotated[float | None, Ge(0)] = None
    """Chunked: temporal ensembling of overlapping chunks with weights exp(-m * i), oldest first (ACT: m = 0.01)."""
    surprise: Annotated[float | None, Ge(0)] = None
    """Chunked: adaptive chunking; replan as soon as the surprise (relative error between the predicted and the
    observed future in substrate space) exceeds this threshold."""
    kv_cache: bool = True
    """Single-step, autoregressive backbones: reuse the key/value cache (False: re-encode the context every step)."""
    window: Annotated[int | None, Ge(1)] = None
    """Single-step streaming: frames kept in the KV cache (default: the model's n_obs)."""
    decode: bool = False
    """Chunked: also decode the predicted future to pixels at every call (what a render-and-decode model pays)."""
    adapt_steps: Annotated[int, Ge(0)] = 0
    """Chunked and open-loop: test-time adaptation, this many gradient steps of the model's own objective
    (--adapt-objective) on its observation encoder before every replan, over the episode's frames and actions so
    far; each episode starts from the trained weights (0: off). World models whose future a robot observes only
    (wam.deployment.adaptation)."""
    adapt_lr: Annotated[float, Gt(0)] = 1e-4
    """Test-time adaptation: Adam learning rate."""
    adapt_windows: Annotated[int, Ge(1)] = 8
    """Test-time adaptation: the newest windows with an observed future that each step trains on."""
    adapt_objective: Literal["future", "inverse"] = "future"
    """Test-time adaptation: the future streams' loss p(s | c), or the inverse dynamics p(a | c, s) of the executed
    actions beside the future they led to."""


def make_policy(model: WorldActionModel, config: DeploymentConfig | None = None, seed: int = 0,
                inference: InferenceConfig | None = None) -> Policy:
    """The policy for ``config`` (default: the model's own deployment regime and K), calling the model with the
    knobs of ``inference`` (default: the model's own)."""
    inference = inference or model.default_inference
    cfg = config or DeploymentConfig()
    regime = Deployment(cfg.deployment) if cfg.deployment else model.config.spec.deployment
    fixed = {Deployment.SINGLE_STEP: 1, Deployment.INTERACTIVE: 1, Deployment.OPEN_LOOP: model.config.horizon}.get(regime)
    if fixed is not None and cfg.n_action_steps not in (None, fixed):
        raise ValueError(f"{regime.value} deployment executes {fixed} action(s) per call; got K={cfg.n_action_steps}")
    if regime is not Deployment.CHUNKED and (cfg.ensemble is not None or cfg.surprise is not None):
        raise ValueError(f"temporal ensembling and adaptive chunking are options of chunked deployment, not of "
                         f"{regime.value}; add --deployment chunked")
    if cfg.ensemble is not None and cfg.surprise is not None:
        raise ValueError("choose temporal ensembling or adaptive chunking, not both")
    if cfg.adapt_steps and (regime not in (Deployment.CHUNKED, Deployment.OPEN_LOOP) or cfg.surprise is not None):
        now = "adaptive chunking (--surprise)" if cfg.surprise is not None else f"{regime.value} deployment"
        raise ValueError(f"test-time adaptation (--adapt-steps) adapts before the replans of chunked or open-loop "
                         f"deployment at a fixed K, not of {now}; choose --deployment chunked"
                         + (" without --surprise" if cfg.surprise is not None else ""))
    if regime is Deployment.INTERACTIVE and model.coupling.has_future_stream:
        # Imagine the next observation; the real one then replaces it.
        inference = model.inference(future="predict", base=inference)
    if regime in (Deployment.SINGLE_STEP, Deployment.INTERACTIVE):
        return _single_step(model, cfg, seed, regime, inference)
    if cfg.surprise is not None:
        return AdaptivePolicy(model, cfg.n_action_steps, seed, cfg.surprise, decode=cfg.decode, inference=inference)
    k = cfg.n_action_steps if fixed is None else fixed
    if cfg.adapt_steps:
        policy: Policy = AdaptingPolicy(model, Adaptation(cfg.adapt_steps, cfg.adapt_lr, cfg.adapt_windows,
                                                              cfg.adapt_objective), k, seed,
                                        cfg.ensemble, cfg.decode, inference)
    else:
        policy = ChunkedPolicy(model, k, seed, cfg.ensemble, cfg.decode, inference)
    policy.regime = regime.value
    return policy


def _single_step(model: WorldActionModel, cfg: DeploymentConfig, seed: int, regime: Deployment,
                 inference: InferenceConfig) -> Policy:
    """One call per step: streamed through the KV cache where the backbone allows it, else chunked with K = 1."""
    if StreamingPolicy.why_not(model) is None and not cfg.decode:
        policy = StreamingPolicy(model, seed, cfg.kv_cache, cfg.window, inference)
    else:
        policy = ChunkedPolicy(model, 1, seed, decode=cfg.decode, inference=inference)
    policy.regime = regime.value
    return policy


__all__ = ["AdaptingPolicy", "AdaptivePolicy", "ChunkedPolicy", "DeploymentConfig", "Policy", "StreamingPolicy",
           "make_policy"]
