"""Action-conditioned rollout: ``q(a | c) p(s | c, a)``. Candidate chunks are rolled out and scored; a planner
picks the one to execute.

The backbone learns a prior policy stream (``action``, reading nothing) and a forward model (the futures read the
action). At inference a proposal draws candidates (samples of the prior, noise around the last plan, or
uniform), the forward model predicts each candidate's future, an objective scores it, and CEM, MPPI or
best-of-N picks: over whole chunks (``granularity="chunk"``), or over the next action only with the rest of the
chunk fixed (``"step"``, the step-wise form for single-step deployment). Objectives: a progress/value head and a
success classifier trained on the clean future targets (labels: episode progress and success at
``t + max(offsets)``), or the distance to the task's goal in substrate space (the mean future target of the
demonstrations' last frames, fitted after training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wam.backbones.base import Stream, module_key
from wam.couplings.base import ACTION, BaseCoupling, Call
from wam.couplings.planners import PLANNERS, PlannerConfig
from wam.nn import random


class Rollout(BaseCoupling):
    plans = True
    label_keys = ("progress", "next.success")

    def __init__(self, futures: tuple[str, ...], streams: dict[str, Stream], d_model: int, n_action_steps: int,
                 n_tasks: int, future_weight: float = 1.0):
        super().__init__(futures)
        self.n_action_steps, self.future_weight = n_action_steps, future_weight
        self.streams = {f: streams[f] for f in futures}
        self.embed = nn.ModuleDict({module_key(f): nn.Linear(self._width(f), d_model) for f in futures})
        self.value = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, 2))
        for i, f in enumerate(futures):
            self.register_buffer(f"goal_{i}", torch.zeros(n_tasks, streams[f].length, self._width(f)))
        self._last_plan: torch.Tensor | None = None

    def _width(self, name: str) -> int:
        s = self.streams[name]
        return s.vocab or s.dim

    def as_continuous(self, name: str, x: torch.Tensor) -> torch.Tensor:
        s = self.streams[name]
        return F.one_hot(x.long(), s.vocab).float() if s.vocab else x.float()

    @property
    def reads(self):
        return {f: (ACTION,) for f in self.futures}

    @property
    def acts_from_backbone(self) -> bool:
        return False  # the planner acts, over the backbone's rollouts

    @property
    def order(self):
        return (ACTION, *self.futures)

    def heads(self, futures: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted (progress, success logit) ``[B, 2]`` of a future."""
        pooled = sum(self.embed[module_key(f)](self.as_continuous(f, futures[f])).mean(1) for f in self.futures)
        return self.value(pooled)

    def loss(self, backbone, context, action, futures, step=None, labels=None):
        losses = backbone.loss(context, {**futures, ACTION: action})
        losses = {n: v * (1.0 if n.startswith(ACTION) else self.future_weight) for n, v in losses.items()}
        if labels:
            out = self.heads({f: x.detach() for f, x in futures.items()})
            losses["objective"] = (F.mse_loss(out[:, 0], labels["progress"])
                                   + F.binary_cross_entropy_with_logits(out[:, 1], labels["success"]))
        return losses

    def objective(self, futures: dict[str, torch.Tensor], task: torch.Tensor, planner: PlannerConfig) -> torch.Tensor:
        """Score ``[B]`` of predicted futures under the planner's objective, higher is better."""
        kind = planner.objective
        if kind == "goal":
            return -sum((self.as_continuous(f, futures[f]) - getattr(self, f"goal_{i}")[task, :futures[f].shape[1]])
                        .pow(2).flatten(1).mean(1) for i, f in enumerate(self.futures))
        out = self.heads(futures)
        return out[:, 0] if kind == "progress" else torch.sigmoid(out[:, 1])

    def set_goals(self, goals: dict[str, torch.Tensor]) -> None:
        """Per-task goal tokens ``[n_tasks, L, width]`` for every future stream."""
        for i, f in enumerate(self.futures):
            getattr(self, f"goal_{i}").copy_(self.as_continuous(f, goals[f]) if goals[f].dtype == torch.long else goals[f])

    def propose(self, backbone, context, call: Call, n: int, generator=None) -> torch.Tensor:
        """``n`` candidate chunks ``[B, n, H, d_a]`` (normalized) from the planner's proposal."""
        b, steps = context.shape[0], call.steps
        kind = call.planner.proposal
        shape = (b, n, backbone.streams[ACTION].length, backbone.streams[ACTION].dim)
        if kind == "prior" or (kind == "noise" and self._last_plan is None):
            flat = backbone.sample(context.repeat_interleave(n, 0), (ACTION,), steps, generator=generator)[ACTION]
            return flat.view(b, n, *flat.shape[1:])
        if kind == "uniform":
            return random.rand(shape, generator, context.device) * 2 - 1
        k = self.n_action_steps  # the last plan, shifted past what was executed and padded with its last step
        plan = torch.cat([self._last_plan[:, k:], self._last_plan[:, -1:].expand(-1, k, -1)], dim=1)
        noise = random.randn(shape, generator, context.device) * call.planner.noise_std
        noise[:, 0] = 0
        return (plan[:, None] + noise).clamp(-1, 1)

    def act(self, backbone, context, call, generator=None, task=None):
        cfg, b = call.planner, context.shape[0]
        task = torch.zeros(b, dtype=torch.long, device=context.device) if task is None else task
        n = cfg.candidates

        candidates = self.propose(backbone, context, call, n, generator)
        # Step-wise: only the next action is searched; the rest of every candidate is the first proposal's.
        tail = candidates[:, :1, 1:] if cfg.granularity == "step" else None

        def evaluate(searched: torch.Tensor) -> torch.Tensor:
            chunks = searched if tail is None else torch.cat([searched, tail.expand(-1, n, -1, -1)], dim=2)
            return self.score_chunks(backbone, context, call, chunks, task, generator)

        searched = candidates if tail is None else candidates[:, :, :1]
        plan = PLANNERS[cfg.planner](searched, evaluate, cfg, generator)
        plan = plan if tail is None else torch.cat([plan, tail[:, 0]], dim=1)
        self._last_plan = plan
        return plan, {}

    def score_chunks(self, backbone, context, call: Call, chunks: torch.Tensor, task: torch.Tensor,
                     generator=None) -> torch.Tensor:
        """The objective's score ``[B, N]`` of normalized ``chunks [B, N, H, d_a]``: each rolled out by the forward
        model from its row's context, then scored (higher is better)."""
        b, n = chunks.shape[:2]
        futures = backbone.sample(context.repeat_interleave(n, 0), self.futures, call.steps,
                                  given={ACTION: chunks.flatten(0, 1)}, generator=generator, lengths=call.lengths)
        return self.objective(futures, task.repeat_interleave(n, 0), call.planner).view(b, n)

    def predict(self, backbone, context, call, actions=None, generator=None):
        if actions is None:
            actions = backbone.sample(context, (ACTION,), call.steps, generator=generator)[ACTION]
        return backbone.sample(context, self.futures, call.steps, given={ACTION: actions}, generator=generator,
                               lengths=call.lengths)

    def keeps_episode_state(self, planner) -> bool:
        return planner.proposal == "noise"  # proposals around the episode's last plan

    def reset(self) -> None:
        self._last_plan = None
