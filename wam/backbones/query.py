"""One-pass backbones over learned queries: the shared trunk of ``hybrid`` and the predictor of ``jepa``.

Every stream enters the trunk either as its clean value (when given) or as a learned query (when predicted);
one non-causal pass gives a feature per token, and per-stream heads turn features into outputs:

- ``HybridBackbone``: a shared trunk with light per-token diffusion heads (one for the substrate, one for the
  action), each with its own noise level; the trunk runs once per call and only the small heads iterate, and a
  head whose stream is skipped is never run (UVA, UWM);
- ``JEPABackbone``: deterministic regression heads in embedding space, no decoder and no noise; the targets come
  from a stop-gradient (EMA or frozen) encoder, and a variance hinge on the predictions guards against collapse.

So that a stream that others read is learned both as a query and as a given value (which is how a post-head
reads a generated future, or a rollout reads a candidate action), training feeds it as its clean value in half
of the samples and takes its loss only where it was a query.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from wam.backbones.base import Stream, StreamBackbone, module_key, per_sample_error, regression_loss
from wam.backbones.noise import NoiseProcess, Parameterization
from wam.nn import random
from wam.nn.layers import timestep_embedding
from wam.nn.transformer import Transformer, stream_mask


class QueryBackbone(StreamBackbone):
    """The trunk: context, given values and learned queries in, one feature per stream token out."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], dropout: float = 0.1, order: tuple[str, ...] = ()):
        super().__init__(d_model, context_len, streams, reads, order)
        self.query = nn.ParameterDict({module_key(n): nn.Parameter(torch.randn(s.length, d_model) * 0.02)
                                       for n, s in self.streams.items()})
        self.trunk = Transformer(d_model, n_layers, n_heads, dropout)

    def features(self, context: torch.Tensor, present: tuple[str, ...], values: Mapping[str, torch.Tensor],
                 given_mask: Mapping[str, torch.Tensor] | None = None,
                 hide: Mapping[tuple[str, str], torch.Tensor] | None = None,
                 lengths: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
        """Trunk features of the streams in ``present``.

        A stream with a value in ``values`` enters as that value in the samples where ``given_mask[name]`` is True
        (all samples if it has no mask), and as its learned query elsewhere (only the first ``lengths[name]``
        queries when the prediction horizon is shortened).
        """
        b = context.shape[0]
        tokens, spans, start = [context], {}, self.context_len
        for n in present:
            query = (self.query[module_key(n)] + self.pos[module_key(n)])[None, :self.length(n, lengths)].expand(b, -1, -1)
            if n in values:
                value = self.embed_stream(n, values[n])
                mask = (given_mask or {}).get(n)
                h = value if mask is None else torch.where(mask[:, None, None], value, query)
            else:
                h = query
            tokens.append(h)
            spans[n] = (start, start + h.shape[1])
            start += h.shape[1]
        mask = stream_mask(self.context_len, spans, self.reads, b, hide, device=context.device)
        h = self.trunk(torch.cat(tokens, dim=1), mask)
        return {n: h[:, lo:hi] for n, (lo, hi) in spans.items()}

    def _teacher_masks(self, targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per target stream, the samples in which it enters as its clean value: half of them if another target
        stream reads it, none otherwise. Everywhere else it is a query, as at inference: a target that entered as
        its own value would be copied through the trunk instead of predicted."""
        read = {r for n in targets for r in self.reads[n]}
        b = next(iter(targets.values())).shape[0]
        device = next(iter(targets.values())).device
        return {n: (torch.rand(b, device=device) < 0.5) if n in read else torch.zeros(b, dtype=torch.bool, device=device)
                for n in targets}

    def _head_loss(self, name: str, feature: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, context, targets, given=None, hide=None):
        given = dict(given or {})
        teacher = self._teacher_masks(targets)
        present = tuple(n for n in self.order if n in targets or n in given)
        feats = self.features(context, present, {**given, **targets}, teacher, hide)
        losses = {}
        for n, target in targets.items():
            keep = ~teacher[n]  # the loss is taken where the stream was a query
            if not keep.any():
                losses[n] = feats[n].sum() * 0.0
                continue
            losses[n] = self._head_loss(n, feats[n][keep], target[keep])
        return losses


class HybridBackbone(QueryBackbone):
    """Shared trunk + light per-token diffusion heads, one per stream (see the module docstring)."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], train_timesteps: int = 100,
                 parameterization: Parameterization = "flow", dropout: float = 0.1, order: tuple[str, ...] = ()):
        super().__init__(d_model, n_layers, n_heads, context_len, streams, reads, dropout, order)
        self.process = NoiseProcess(train_timesteps, parameterization, {n: s.clip for n, s in self.streams.items()})
        self.denoisers = nn.ModuleDict({module_key(n): _DenoiserHead(s.dim, d_model) for n, s in self.streams.items()
                                        if not s.regress})

    def _denoise(self, name: str, feature: torch.Tensor, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        return self.denoisers[module_key(name)](feature, x, level)

    def _head_loss(self, name, feature, target):
        if self.streams[name].regress:
            return F.mse_loss(self.read_out(name, feature), target)
        level = self.process.draw(target.shape[0], target.device)
        noisy, goal = self.process.noise(target, torch.randn_like(target), level)
        return F.mse_loss(self._denoise(name, feature, noisy, level), goal)

    @torch.no_grad()
    def sample(self, context, generate, steps, given=None, generator=None, partial=None, lengths=None):
        given = dict(given or {})
        present = tuple(n for n in self.order if n in generate or n in given)
        feats = self.features(context, present, given, lengths=lengths)  # the trunk runs once; the heads iterate
        b, device = context.shape[0], context.device
        out = {}
        denoised = [n for n in generate if not self.streams[n].regress]
        schedule = self.process.start(denoised, steps) if denoised else []
        for n in generate:
            if self.streams[n].regress:
                out[n] = self.read_out(n, feats[n])
                continue
            x = random.randn((b, feats[n].shape[1], self.streams[n].dim), generator, device)
            for i in range(min(steps, (partial or {}).get(n, steps))):
                x = self.process.step(n, i, self._denoise(n, feats[n], x, torch.full((b,), schedule[i], device=device)),
                                      x)
            out[n] = self.process.finish(n, x)
        return out

    @torch.no_grad()
    def error(self, context, targets, given=None, levels: int = 4, seed: int = 0):
        given = dict(given or {})
        present = tuple(n for n in self.order if n in targets or n in given)
        feats = self.features(context, present, given)
        b, device = context.shape[0], context.device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        total = torch.zeros(b, device=device)
        for n, x in targets.items():
            if self.streams[n].regress:
                total += per_sample_error(self.read_out(n, feats[n]), x, self.streams[n]) * levels
                continue
            for value in self.process.probe_levels(levels):
                t = torch.full((b,), value, device=device)
                noisy, goal = self.process.noise(x, torch.randn(x.shape, generator=gen).to(device), t)
                total += per_sample_error(self._denoise(n, feats[n], noisy, t), goal, self.streams[n])
        return total / levels


class _DenoiserHead(nn.Module):
    """Per-token MLP denoiser conditioned on the trunk feature of its token and the noise level."""

    def __init__(self, dim: int, d_model: int):
        super().__init__()
        self.d_model = d_model
        self.inp = nn.Linear(dim, d_model)
        self.net = nn.Sequential(nn.LayerNorm(3 * d_model), nn.Linear(3 * d_model, 2 * d_model), nn.SiLU(),
                                 nn.Linear(2 * d_model, 2 * d_model), nn.SiLU(), nn.Linear(2 * d_model, dim))

    def forward(self, feature: torch.Tensor, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        t = timestep_embedding(level + 1, self.d_model)[:, None].expand(-1, x.shape[1], -1)
        return self.net(torch.cat([feature, self.inp(x), t], dim=-1))


class JEPABackbone(QueryBackbone):
    """Deterministic predictor in embedding space with a collapse guard (see the module docstring)."""

    def __init__(self, *args, collapse_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.collapse_weight = collapse_weight

    def _head_loss(self, name, feature, target):
        prediction = self.read_out(name, feature)
        loss = regression_loss(prediction, target, self.streams[name])
        if name.startswith("future") and self.collapse_weight and prediction.shape[0] > 1:
            # VICReg-style hinge: every embedding dimension keeps a standard deviation of at least 1 across the batch.
            std = prediction.flatten(0, 1).std(0)
            loss = loss + self.collapse_weight * F.relu(1 - std).mean()
        return loss

    @torch.no_grad()
    def sample(self, context, generate, steps, given=None, generator=None, partial=None, lengths=None):
        given = dict(given or {})
        present = tuple(n for n in self.order if n in generate or n in given)
        feats = self.features(context, present, given, lengths=lengths)
        return {n: self._readout_value(n, feats[n]) for n in generate}

    def _readout_value(self, name: str, feature: torch.Tensor) -> torch.Tensor:
        out = self.read_out(name, feature)
        if self.streams[name].vocab:
            return out.argmax(-1)
        clip = self.streams[name].clip
        return out.clamp(-clip, clip) if clip else out

    @torch.no_grad()
    def error(self, context, targets, given=None):
        given = dict(given or {})
        present = tuple(n for n in self.order if n in targets or n in given)
        feats = self.features(context, present, given)
        return sum(per_sample_error(self.read_out(n, feats[n]), x, self.streams[n]) for n, x in targets.items())
