"""LLM/VLM backbone: a causal transformer over one discrete vocabulary, followed by a flow-matching action expert.

The trunk is the autoregressive backbone with the action turned into tokens: every action dimension of every
step is binned (RT-2 style), so instruction, substrate tokens (codebook ids for ``feature-token``) and actions
share one sequence. The binned actions are a training target that shapes the trunk; the executed action comes
from an *action expert* (pi-0 style): a small flow-matching transformer whose context is the trunk's hidden
states of the observation prefix and which reads the hidden states of the futures the trunk generated before it.
So at inference the action costs a few expert passes, not ``H x d_a`` token decodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from wam.backbones.autoregressive import AutoregressiveBackbone
from wam.backbones.base import Stream, regression_loss
from wam.backbones.diffusion import DiffusionBackbone

ACTION = "action"


class VLMBackbone(nn.Module):
    """Causal trunk over binned actions and substrate tokens + action expert (see the module docstring)."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], order: tuple[str, ...] = (), action_bins: int = 64,
                 expert_layers: int = 2, train_timesteps: int = 100, dropout: float = 0.1):
        super().__init__()
        action = streams[ACTION]
        self.horizon, self.action_dim, self.bins = action.length, action.dim, action_bins
        self.streams = dict(streams)
        trunk_streams = {**streams, ACTION: Stream(action.length * action.dim, 1, vocab=action_bins)}
        self.trunk = AutoregressiveBackbone(d_model, n_layers, n_heads, context_len, trunk_streams, reads, dropout, order)
        self.context_len = context_len
        trunk_order = self.trunk.order
        # The expert reads the hidden states of every future the trunk generates before the action.
        self.memory = tuple(n for n in trunk_order[: trunk_order.index(ACTION)] if n in self.trunk.reads[ACTION])
        expert_streams = {ACTION: action, **{_memory(n): Stream(streams[n].length + 1, d_model) for n in self.memory}}
        self.expert = DiffusionBackbone(d_model, expert_layers, n_heads, context_len, expert_streams,
                                        {ACTION: tuple(_memory(n) for n in self.memory)}, train_timesteps, "flow",
                                        dropout)

    @property
    def reads(self) -> dict[str, tuple[str, ...]]:
        return self.trunk.reads

    def tokenize(self, action: torch.Tensor) -> torch.Tensor:
        """Normalized actions ``[B, H, d_a]`` in [-1, 1] -> bin ids ``[B, H * d_a]``."""
        ids = ((action.clamp(-1, 1) + 1) / 2 * (self.bins - 1)).round().long()
        return ids.flatten(1)

    def _trunk_values(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: (self.tokenize(v) if n == ACTION else v) for n, v in values.items()}

    def _expert_inputs(self, hidden: torch.Tensor, spans: Mapping[str, tuple[int, int]],
                       hide: Mapping[tuple[str, str], torch.Tensor] | None = None):
        memory = {_memory(n): hidden[:, lo:hi] for n, (lo, hi) in spans.items() if n in self.memory}
        expert_hide = {(ACTION, _memory(n)): m for (r, n), m in (hide or {}).items() if r == ACTION and n in self.memory}
        return hidden[:, : self.context_len], memory, expert_hide

    def loss(self, context, targets, given=None, hide=None):
        values = self._trunk_values({**(given or {}), **targets})
        hidden, spans = self.trunk.hidden(context, values, hide)
        losses = {}
        for n in targets:
            lo, hi = spans[n]
            prediction = self.trunk.read_out(n, hidden[:, lo:hi - 1])
            key = "action_tokens" if n == ACTION else n
            losses[key] = regression_loss(prediction, values[n], self.trunk.streams[n])
        if ACTION in targets:
            ctx, memory, expert_hide = self._expert_inputs(hidden, spans, hide)
            losses[ACTION] = self.expert.loss(ctx, {ACTION: targets[ACTION]}, memory, expert_hide)[ACTION]
        return losses

    @torch.no_grad()
    def sample(self, context, generate, steps, given=None, generator=None, partial=None, lengths=None):
        given = dict(given or {})
        if ACTION not in generate:
            return self.trunk.sample(context, generate, given=self._trunk_values(given), generator=generator,
                                     lengths=lengths)
        before = tuple(n for n in generate if n != ACTION)
        out, hidden, spans, _ = self.trunk.generate(context, before, self._trunk_values(given), generator,
                                                    stop_before=ACTION, lengths=lengths)
        ctx, memory, _ = self._expert_inputs(hidden, spans)
        out[ACTION] = self.expert.sample(ctx, (ACTION,), steps, given=memory, generator=generator)[ACTION]
        rest = tuple(n for n in before if n not in out)
        if rest:  # streams serialized after the action, e.g. the future of the chosen action under rollout
            out.update(self.sample(context, rest, steps, {**given, **out}, generator, lengths=lengths))
        return out

    @torch.no_grad()
    def error(self, context, targets, given=None):
        values = self._trunk_values({**(given or {}), **targets})
        total = self.trunk.error(context, {n: values[n] for n in targets}, {n: values[n] for n in (given or {})})
        if ACTION in targets:
            hidden, spans = self.trunk.hidden(context, values)
            ctx, memory, _ = self._expert_inputs(hidden, spans)
            total = total + self.expert.error(ctx, {ACTION: targets[ACTION]}, memory)
        return total


def _memory(name: str) -> str:
    return f"memory.{name}"
