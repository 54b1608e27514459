"""Diffusion backbone: a transformer denoiser over named token streams, each with its own noise level.

Every stream token carries the embedding of its stream's own noise level, so one model can denoise the action
while the future is clean (an inverse model), noisy, partly denoised or absent (a policy), or denoise the future
with the action clean (a forward model). Who attends to whom is the coupling's choice (``reads``); context
tokens attend only to the context, so they never depend on noisy streams.

Three parameterizations (``wam.backbones.noise``): ``epsilon`` or ``sample`` (noise or clean-sample prediction on a
DDPM schedule, DDIM sampling) and ``flow`` (flow matching: ``x_s = (1 - s) x_0 + s eps``, velocity ``eps - x_0``,
Euler sampling). The samplers come from
``diffusers``; the number of sampler steps is a runtime knob. Streams marked ``regress`` (feature taps) are
predicted in the same passes from learned queries rather than denoised.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from wam.backbones.base import Stream, StreamBackbone, per_sample_error
from wam.backbones.noise import NoiseProcess, Parameterization
from wam.nn import random
from wam.nn.layers import timestep_embedding
from wam.nn.transformer import Transformer, stream_mask


class DiffusionBackbone(StreamBackbone):
    """Learns and samples token streams given context; see the module docstring."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], train_timesteps: int = 100,
                 parameterization: Parameterization = "epsilon", dropout: float = 0.1, order: tuple[str, ...] = ()):
        super().__init__(d_model, context_len, streams, reads, order)
        self.train_timesteps = train_timesteps
        self.process = NoiseProcess(train_timesteps, parameterization, {n: s.clip for n, s in self.streams.items()})
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_model * 2), nn.SiLU(), nn.Linear(d_model * 2, d_model))
        self.trunk = Transformer(d_model, n_layers, n_heads, dropout)

    def forward(self, context: torch.Tensor, streams: Mapping[str, torch.Tensor], levels: Mapping[str, torch.Tensor],
                hide: Mapping[tuple[str, str], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The model output (noise, velocity, or the value of a regress stream) for every stream in ``streams``.

        ``levels[name]`` is ``[B]``: the noise level in ``[0, train_timesteps]`` (0 = clean).
        """
        tokens, spans, start = [context], {}, self.context_len
        for n, x in streams.items():
            if self.streams[n].regress:  # a tap reads no value: it is a learned query at its own fixed level
                x, level = torch.zeros_like(x), torch.full_like(levels[n], self.train_timesteps + 1)
            else:
                level = levels[n]
            h = self.embed_stream(n, x) + self.time_mlp(timestep_embedding(level + 1, self.d_model))[:, None]
            tokens.append(h)
            spans[n] = (start, start + h.shape[1])
            start += h.shape[1]
        mask = stream_mask(self.context_len, spans, self.reads, context.shape[0], hide, device=context.device)
        h = self.trunk(torch.cat(tokens, dim=1), mask)
        return {n: self.read_out(n, h[:, lo:hi]) for n, (lo, hi) in spans.items()}

    def loss(self, context, targets, given=None, hide=None):
        """Denoising loss per target stream, each noised at its own independently drawn level; ``given`` is clean."""
        b, device = context.shape[0], context.device
        inputs, goals, levels = {}, {}, {}
        for n, x in (given or {}).items():
            inputs[n], levels[n] = x, torch.zeros(b, device=device)
        for n, x0 in targets.items():
            levels[n] = self.process.draw(b, device)
            if self.streams[n].regress:
                inputs[n], goals[n] = x0, x0
            else:
                inputs[n], goals[n] = self.process.noise(x0, torch.randn_like(x0), levels[n])
        out = self(context, inputs, levels, hide)
        return {n: F.mse_loss(out[n], goals[n]) for n in targets}

    @torch.no_grad()
    def sample(self, context, generate, steps, given=None, generator=None, partial=None, lengths=None):
        """Generate ``generate`` with ``steps`` sampler steps given clean ``given`` streams.

        ``partial[name] = k`` stops denoising that stream after ``k`` steps: it stays at the noise level it reached
        and the other streams keep reading it there (in distribution, since training draws levels independently).
        """
        b, device = context.shape[0], context.device
        given, partial = dict(given or {}), dict(partial or {})
        x = {n: random.randn((b, self.length(n, lengths), self.streams[n].dim), generator, device)
             for n in generate}
        level = {n: torch.zeros(b, device=device) for n in given}
        level.update({n: torch.zeros(b, device=device) for n in generate})
        denoised = [n for n in generate if not self.streams[n].regress]
        schedule = self.process.start(denoised, steps) if denoised else [0.0, 0.0]
        out = {}
        for i in range(len(schedule) - 1):
            active = [n for n in denoised if i < partial.get(n, steps)]
            for n in active:
                level[n] = torch.full((b,), schedule[i], device=device)
            out = self(context, {**given, **x}, level)
            for n in active:
                x[n] = self.process.step(n, i, out[n], x[n])
                level[n] = torch.full((b,), schedule[i + 1], device=device)
        for n in generate:
            x[n] = out[n] if self.streams[n].regress else self.process.finish(n, x[n])
        return x

    @torch.no_grad()
    def error(self, context, targets, given=None, levels: int = 4, seed: int = 0):
        """Mean denoising error of ``targets`` over fixed noise levels and noise: a likelihood proxy, lower is likelier.

        Deterministic for a given seed, so candidates compared with it see identical noise.
        """
        b, device = context.shape[0], context.device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        given = dict(given or {})
        zero = torch.zeros(b, device=device)
        total = torch.zeros(b, device=device)
        for value in self.process.probe_levels(levels):
            t = torch.full((b,), value, device=device)
            noisy, goal = {}, {}
            for n, x in targets.items():
                noise = torch.randn(x.shape, generator=gen).to(device)
                noisy[n], goal[n] = (x, x) if self.streams[n].regress else self.process.noise(x, noise, t)
            out = self(context, {**given, **noisy}, {**{n: zero for n in given}, **{n: t for n in targets}})
            for n in targets:
                total += per_sample_error(out[n], goal[n], self.streams[n])
        return total / levels
