"""A small frame tokenizer shared by the pixel-latent and feature-token substrates.

``quantize=False`` is a VAE: ``encode`` gives the posterior mean (deterministic), ``decode`` maps it back to pixels.
``quantize=True`` is a VQ autoencoder: every cell of the latent grid snaps to one of ``codebook_size`` vectors, and
``encode_ids`` / ``embed_ids`` convert between frames, token ids and code vectors.

Public latents are multiplied by a scale measured at the end of ``fit`` so they are about unit variance, which is
what a diffusion backbone on top expects; ``loss`` works on the unscaled latents, so the scale never feeds training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderConfig:
    image_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128)  # one stride-2 stage each: 64 -> 8
    latent_channels: int = 8
    quantize: bool = False  # False: VAE (Gaussian posterior, KL weight); True: VQ codebook
    codebook_size: int = 128
    kl_weight: float = 1e-4
    commitment: float = 0.25

    def __post_init__(self):
        self.channels = tuple(self.channels)
        if self.image_size % 2 ** len(self.channels):
            step = 2 ** len(self.channels)
            raise ValueError(f"images of {self.image_size}x{self.image_size} cannot pass the frame autoencoder, which "
                             f"halves them {len(self.channels)} times and decodes them back: collect the demonstrations "
                             f"at a size divisible by {step} (the nearest: {self.image_size // step * step} or "
                             f"{(self.image_size // step + 1) * step})")
        if any(c % 8 for c in self.channels):
            raise ValueError(f"channels {self.channels} must be multiples of 8 (GroupNorm with 8 groups)")


def _norm_act(c: int) -> list[nn.Module]:
    return [nn.GroupNorm(8, c), nn.SiLU()]


RESTART_EVERY = 50  # steps; a code no cell picked in that long (200k picks at batch 64, 8x8 grid) is dead


class FrameAutoencoder(nn.Module):
    """Frames ``[N, 3, H, W]`` in [0, 1] <-> latents ``[N, latent_channels, h, w]`` (and token ids when quantized)."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = cfg = config
        chans = cfg.channels
        enc: list[nn.Module] = []
        c_in = 3
        for c in chans:
            enc += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), *_norm_act(c)]
            c_in = c
        # The VAE needs a mean and a log-variance per latent channel; the VQ encoder only the vector to snap.
        enc.append(nn.Conv2d(c_in, cfg.latent_channels * (1 if cfg.quantize else 2), 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, chans[-1], 3, padding=1), *_norm_act(chans[-1])]
        for c_in, c in zip(chans[::-1], chans[-2::-1]):
            dec += [nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1), *_norm_act(c)]
        dec.append(nn.ConvTranspose2d(chans[0], 3, 4, stride=2, padding=1))
        self.decoder = nn.Sequential(*dec)
        if cfg.quantize:
            self.codebook = nn.Parameter(torch.empty(cfg.codebook_size, cfg.latent_channels))
        self.register_buffer("scale", torch.ones(()))
        self._init_codebook()

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // 2 ** len(self.config.channels)
        return side, side

    # ---- raw (unscaled) internals -------------------------------------------------------------------------------

    def _init_codebook(self) -> None:
        if self.config.quantize:
            with torch.no_grad():
                self.codebook.copy_(F.normalize(torch.randn_like(self.codebook), dim=-1))

    def _reset(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        self._init_codebook()
        self.scale.fill_(1.0)

    def _encode_raw(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images * 2 - 1)

    def _nearest(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine nearest neighbour: ``z [N, C, h, w]`` -> (unit code vectors ``[N, C, h, w]``, ids ``[N, h*w]``).

        Both sides are L2-normalized, which keeps the encoder from running away from the codes and makes every
        code reachable (the usual fix for codebook collapse, as in ViT-VQGAN).
        """
        flat = F.normalize(z.flatten(2).transpose(1, 2), dim=-1)  # [N, hw, C]
        ids = (flat @ F.normalize(self.codebook, dim=-1).T).argmax(-1)
        return self._lookup(ids), ids

    def _lookup(self, ids: torch.Tensor) -> torch.Tensor:
        h, w = self.grid
        codes = F.normalize(self.codebook, dim=-1)[ids]  # [..., hw, C]
        return codes.transpose(-1, -2).unflatten(-1, (h, w))

    def _decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(latents))

    def _require_vq(self, what: str) -> None:
        if not self.config.quantize:
            raise ValueError(f"{what} needs a quantized autoencoder (AutoencoderConfig(quantize=True)); this one is a "
                             "VAE with continuous latents, use encode / decode instead")

    # ---- public API ---------------------------------------------------------------------------------------------

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> ``[N, latent_channels, h, w]``: posterior mean (VAE) or code vectors (VQ)."""
        z = self._encode_raw(images)
        if self.config.quantize:
            return self._nearest(z)[0] * self.scale
        return z.chunk(2, dim=1)[0] * self.scale

    def encode_ids(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> token ids ``[N, h*w]`` in ``[0, codebook_size)``, row-major over the grid."""
        self._require_vq("encode_ids")
        return self._nearest(self._encode_raw(images))[1]

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[..., h*w]`` -> latents ``[..., latent_channels, h, w]``, the same as ``encode`` gives."""
        self._require_vq("embed_ids")
        return self._lookup(ids) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[N, latent_channels, h, w]`` -> images ``[N, 3, H, W]`` in [0, 1]."""
        return self._decode_raw(latents / self.scale)

    def loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction MSE plus KL (VAE) or codebook + commitment (VQ); every term is a per-element mean."""
        loss, info, _ = self._loss(images)
        return loss, info

    def _loss(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
        """``loss`` plus, for VQ, the code ids ``[N, h*w]`` (``fit`` counts them to find dead codes)."""
        cfg = self.config
        z = self._encode_raw(images)
        if cfg.quantize:
            q, ids = self._nearest(z)
            z = F.normalize(z, dim=1)
            # Codebook and commitment terms have the same value; they differ in which side receives the gradient.
            codebook, commitment = F.mse_loss(q, z.detach()), F.mse_loss(z, q.detach())
            recon = F.mse_loss(self._decode_raw(z + (q - z).detach()), images)  # straight-through estimator
            loss = recon + codebook + cfg.commitment * commitment
            return loss, {"recon": recon.item(), "codebook": codebook.item()}, ids
        mean, logvar = z.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        sample = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = F.mse_loss(self._decode_raw(sample), images)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        return recon + cfg.kl_weight * kl, {"recon": recon.item(), "kl": kl.item()}, None

    def fit(self, images: np.ndarray, steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
            progress: bool = True) -> list[dict]:
        """Train on uint8 frames ``[N, H, W, 3]`` from a fresh seeded initialization, then freeze; ~20 loss records.

        The result depends only on the data, the arguments and ``seed``: initialization, batches and VAE noise all
        come from torch's RNG, reseeded here and restored afterwards so the caller's random stream is untouched.
        VQ codes unused for ``RESTART_EVERY`` steps restart at random encoder outputs, keeping codebook usage healthy.
        """
        from tqdm import tqdm

        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        frames = torch.from_numpy(np.ascontiguousarray(images))  # stays uint8: floats would be 4x the memory
        device = next(self.parameters()).device

        def to_float(x: torch.Tensor) -> torch.Tensor:
            return x.to(device).permute(0, 3, 1, 2).float() / 255

        log_every, history = max(1, steps // 20), []
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            self.requires_grad_(True).train()
            with torch.no_grad():
                self._reset()
            optimizer = torch.optim.Adam(self.parameters(), lr=lr)
            warmup, total = min(100, steps // 10 + 1), max(steps, 1)
            schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, cosine decay to zero
                optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0))))
            usage = torch.zeros(self.config.codebook_size, dtype=torch.long, device=device)
            used, restarts = 1.0, 0
            for step in tqdm(range(1, steps + 1), desc="autoencoder", unit="step", disable=not progress, mininterval=1):
                batch = to_float(frames[torch.randint(len(frames), (batch_size,))])
                loss, info, ids = self._loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                if ids is not None:
                    usage += torch.bincount(ids.flatten(), minlength=len(usage))
                    if step % RESTART_EVERY == 0:
                        used = (usage > 0).float().mean().item()
                        restarts += self._restart(usage == 0, batch) if step <= 0.9 * steps else 0  # then let them settle
                        usage.zero_()
                    info |= {"usage": used, "restarts": restarts}  # usage: fraction of codes hit in the last window
                if step % log_every == 0 or step == steps:
                    history.append({"step": step, "loss": loss.item(), **info})
            self.eval().requires_grad_(False)
            with torch.no_grad():  # a fixed scale, measured once, makes the public latents about unit variance
                sample = to_float(frames[torch.randperm(len(frames))[:512]])
                latents = torch.cat([self.encode(chunk) for chunk in sample.split(128)])
                self.scale.fill_(1.0 / latents.std().clamp_min(1e-6).item())
        return history

    @torch.no_grad()
    def _restart(self, dead: torch.Tensor, images: torch.Tensor) -> int:
        """Move the ``dead`` codes onto random encoder outputs of ``images``, where they will be used next step."""
        n = int(dead.sum())
        if n:
            z = F.normalize(self._encode_raw(images), dim=1).flatten(2).transpose(1, 2).flatten(0, 1)
            self.codebook[dead] = z[torch.randint(len(z), (n,), device=z.device)]
        return n
