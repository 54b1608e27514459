"""Diffusion backbone: a transformer denoiser over named token streams, each with its own noise level.

The backbone sees context tokens (clean, ``[B, N_ctx, d]``) and any number of named streams (``action``:
``[B, H, d_a]``, ``future``: ``[B, N_f, d_f]``, ...). Each stream token carries the embedding of its stream's
own diffusion timestep, so one model can denoise the action while the future is clean, noisy or absent. Who
attends to whom is the coupling's choice (``reads``): context tokens attend only to context, so they never depend
on noisy streams; a stream attends to the context, itself, and the streams it reads.

Training uses epsilon prediction with a DDPM noise schedule; sampling uses DDIM with ``steps`` as a runtime knob
(both from ``diffusers``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from wam.nn.layers import timestep_embedding


class DiffusionBackbone(nn.Module):
    """Learns and samples token streams given context; see the module docstring for the attention rules."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int,
                 streams: Mapping[str, tuple[int, int]], reads: Mapping[str, tuple[str, ...]],
                 train_timesteps: int = 100, clip: Mapping[str, bool] | None = None, dropout: float = 0.1):
        super().__init__()
        from diffusers import DDIMScheduler, DDPMScheduler

        self.d_model, self.n_heads, self.context_len = d_model, n_heads, context_len
        self.streams = dict(streams)  # name -> (length, dim)
        self.reads = {name: tuple(reads.get(name, ())) for name in self.streams}
        self.clip = {name: bool((clip or {}).get(name, False)) for name in self.streams}
        self.in_proj = nn.ModuleDict({n: nn.Linear(dim, d_model) for n, (_, dim) in self.streams.items()})
        self.out_proj = nn.ModuleDict({n: nn.Linear(d_model, dim) for n, (_, dim) in self.streams.items()})
        self.pos = nn.ParameterDict({n: nn.Parameter(torch.randn(length, d_model) * 0.02)
                                     for n, (length, _) in self.streams.items()})
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_model * 2), nn.SiLU(), nn.Linear(d_model * 2, d_model))
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.trunk = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        schedule = dict(num_train_timesteps=train_timesteps, beta_schedule="squaredcos_cap_v2",
                        prediction_type="epsilon")
        self.noise_schedule = DDPMScheduler(**schedule, clip_sample=False)
        self._samplers = {n: DDIMScheduler(**schedule, clip_sample=self.clip[n], set_alpha_to_one=True)
                          for n in self.streams}

    @property
    def train_timesteps(self) -> int:
        return self.noise_schedule.config.num_train_timesteps

    def forward(self, context: torch.Tensor, streams: Mapping[str, torch.Tensor],
                timesteps: Mapping[str, torch.Tensor], hide: Mapping[tuple[str, str], torch.Tensor] | None = None,
                ) -> dict[str, torch.Tensor]:
        """Predict the noise of every stream in ``streams``.

        ``timesteps[name]`` is ``[B]`` (0 = the least noisy level, used for clean given streams).
        ``hide[(reader, read)]`` is a ``[B]`` bool mask of samples in which ``reader`` must not see ``read``.
        """
        b = context.shape[0]
        names = list(streams)
        tokens, spans, start = [context], {}, self.context_len
        for n in names:
            x = self.in_proj[n](streams[n]) + self.pos[n][None]
            x = x + self.time_mlp(timestep_embedding(timesteps[n] + 1, self.d_model))[:, None]
            tokens.append(x)
            spans[n] = (start, start + x.shape[1])
            start += x.shape[1]
        x = torch.cat(tokens, dim=1)
        mask = self._mask(names, spans, start, b, hide or {}, x.device)
        h = self.norm(self.trunk(x, mask=mask))
        return {n: self.out_proj[n](h[:, lo:hi]) for n, (lo, hi) in spans.items()}

    def _mask(self, names, spans, length, batch, hide, device) -> torch.Tensor:
        blocked = torch.ones(batch, length, length, dtype=torch.bool, device=device)
        blocked[:, :, : self.context_len] = False
        for n in names:
            lo, hi = spans[n]
            blocked[:, lo:hi, lo:hi] = False
            for other in self.reads[n]:
                if other in spans:
                    olo, ohi = spans[other]
                    blocked[:, lo:hi, olo:ohi] = False
                    if (n, other) in hide:
                        blocked[hide[(n, other)].to(device), lo:hi, olo:ohi] = True
        return blocked.repeat_interleave(self.n_heads, dim=0)

    def loss(self, context: torch.Tensor, targets: Mapping[str, torch.Tensor],
             hide: Mapping[tuple[str, str], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Denoising loss per stream; each stream is noised at its own independently drawn timestep."""
        b = context.shape[0]
        noisy, noise, timesteps = {}, {}, {}
        for n, x0 in targets.items():
            noise[n] = torch.randn_like(x0)
            timesteps[n] = torch.randint(0, self.train_timesteps, (b,), device=x0.device)
            noisy[n] = self.noise_schedule.add_noise(x0, noise[n], timesteps[n])
        pred = self(context, noisy, timesteps, hide)
        return {n: F.mse_loss(pred[n], noise[n]) for n in targets}

    @torch.no_grad()
    def sample(self, context: torch.Tensor, generate: tuple[str, ...], steps: int,
               given: Mapping[str, torch.Tensor] | None = None,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Generate the streams in ``generate`` with ``steps`` DDIM steps, conditioned on clean ``given`` streams."""
        b, device = context.shape[0], context.device
        given = dict(given or {})
        x = {n: torch.randn(b, *self.streams[n], device=device, generator=generator) for n in generate}
        zero = torch.zeros(b, dtype=torch.long, device=device)
        for sampler in (self._samplers[n] for n in generate):
            sampler.set_timesteps(steps)
        for t in self._samplers[generate[0]].timesteps:
            t_batch = torch.full((b,), int(t), dtype=torch.long, device=device)
            timesteps = {**{n: zero for n in given}, **{n: t_batch for n in generate}}
            eps = self(context, {**given, **x}, timesteps)
            x = {n: self._samplers[n].step(eps[n], t, x[n]).prev_sample for n in generate}
        return x

    @torch.no_grad()
    def denoising_error(self, context: torch.Tensor, targets: Mapping[str, torch.Tensor], levels: int = 4,
                        given: Mapping[str, torch.Tensor] | None = None, seed: int = 0) -> torch.Tensor:
        """Mean epsilon error of ``targets`` over fixed noise levels and noise: a likelihood proxy, lower is likelier.

        Deterministic for a given seed, so candidates compared with it see identical noise.
        """
        b, device = context.shape[0], context.device
        gen = torch.Generator(device="cpu").manual_seed(seed)
        given = dict(given or {})
        zero = torch.zeros(b, dtype=torch.long, device=device)
        total = torch.zeros(b, device=device)
        for level in torch.linspace(0, self.train_timesteps - 1, levels).long():
            t = torch.full((b,), int(level), dtype=torch.long, device=device)
            noise = {n: torch.randn(x.shape, generator=gen).to(device) for n, x in targets.items()}
            noisy = {n: self.noise_schedule.add_noise(x, noise[n], t) for n, x in targets.items()}
            pred = self(context, {**given, **noisy}, {**{n: zero for n in given}, **{n: t for n in targets}})
            for n in targets:
                total += (pred[n] - noise[n]).pow(2).flatten(1).mean(1)
        return total / levels
