"""Planners for action-conditioned rollout: pick the action chunk whose predicted future scores best.

Each planner takes initial candidates ``[B, N, H, d_a]`` (normalized actions in [-1, 1]) and ``evaluate``, which
maps candidates to scores ``[B, N]`` (higher is better), and returns the chosen chunk ``[B, H, d_a]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from annotated_types import Ge

from wam.nn import random

Evaluate = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PlannerConfig:
    """How a rollout coupling searches: proposal, planner, objective and their sizes."""

    planner: Literal["cem", "mppi", "best-of-n"] = "cem"
    proposal: Literal["prior", "noise", "uniform"] = "prior"
    """prior: samples of the model's own policy stream; noise: the last plan plus Gaussian noise; uniform."""
    objective: Literal["progress", "goal", "success"] = "progress"
    """progress: a learned progress/value head; goal: distance to the task's goal in substrate space; success: a
    learned success classifier."""
    granularity: Literal["chunk", "step"] = "chunk"
    """chunk: search whole action chunks; step: search only the next action (the rest of the chunk is the
    proposal's), the step-wise form meant for single-step deployment."""
    candidates: int = 16
    iterations: int = 2
    elites: int = 4
    noise_std: float = 0.2
    temperature: float = 0.05


@dataclass
class PlannerOverrides:
    """Command-line overrides of a rollout model's ``PlannerConfig`` (unset fields keep the model's)."""

    planner: Literal["cem", "mppi", "best-of-n"] | None = None
    proposal: Literal["prior", "noise", "uniform"] | None = None
    objective: Literal["progress", "goal", "success"] | None = None
    granularity: Literal["chunk", "step"] | None = None
    candidates: Annotated[int | None, Ge(1)] = None
    iterations: Annotated[int | None, Ge(1)] = None

    def apply(self, config: PlannerConfig) -> PlannerConfig:
        from dataclasses import asdict, replace

        return replace(config, **{k: v for k, v in asdict(self).items() if v is not None})


def _pick(candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    return candidates[torch.arange(candidates.shape[0]), scores.argmax(1)]


def best_of_n(candidates: torch.Tensor, evaluate: Evaluate, cfg: PlannerConfig, generator=None) -> torch.Tensor:
    return _pick(candidates, evaluate(candidates))


def cem(candidates: torch.Tensor, evaluate: Evaluate, cfg: PlannerConfig, generator=None) -> torch.Tensor:
    """Cross-entropy method: refit a diagonal Gaussian to the elites and resample, ``iterations`` times."""
    scores = evaluate(candidates)
    for _ in range(cfg.iterations - 1):
        top = scores.topk(min(cfg.elites, scores.shape[1]), dim=1).indices
        elites = candidates[torch.arange(candidates.shape[0])[:, None], top]  # [B, E, H, d]
        mean, std = elites.mean(1, keepdim=True), elites.std(1, keepdim=True).clamp_min(0.02)
        noise = random.randn(candidates.shape, generator, candidates.device)
        fresh = (mean + std * noise).clamp(-1, 1)
        fresh[:, : elites.shape[1]] = elites  # keep the elites so the best never gets worse
        candidates, scores = fresh, evaluate(fresh)
    return _pick(candidates, scores)


def mppi(candidates: torch.Tensor, evaluate: Evaluate, cfg: PlannerConfig, generator=None) -> torch.Tensor:
    """Model-predictive path integral: a score-weighted mean of the candidates, resampled around it."""
    for i in range(cfg.iterations):
        scores = evaluate(candidates)
        weights = torch.softmax((scores - scores.max(1, keepdim=True).values) / cfg.temperature, dim=1)
        mean = (weights[..., None, None] * candidates).sum(1)
        if i + 1 < cfg.iterations:
            noise = random.randn(candidates.shape, generator, candidates.device)
            candidates = (mean[:, None] + cfg.noise_std * noise).clamp(-1, 1)
    return mean


PLANNERS = {"cem": cem, "mppi": mppi, "best-of-n": best_of_n}
