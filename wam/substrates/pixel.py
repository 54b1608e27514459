"""Pixel substrates: the future as RGB frames (``decoded``) or as codes of a frozen autoencoder (``latent``)."""

from __future__ import annotations

import numpy as np
import torch

from wam.anatomy import Substrate
from wam.backbones.base import Stream
from wam.substrates.autoencoder import AutoencoderConfig, FrameAutoencoder
from wam.substrates.base import (
    STANDARD_RANGE,
    UNIT_RANGE,
    FutureSubstrate,
    SubstrateInputs,
    SubstrateSizing,
    disk_cached,
    patchify,
    unpatchify,
)

PATCHES_PER_SIDE = 4  # 16 tokens per frame whatever the resolution: the sequence stays short on a CPU


class DecodedFrames(FutureSubstrate):
    """Future frames in [-1, 1], cut into ``4 x 4`` patches per frame; ``decode`` gives frames in [0, 1]."""

    kind = Substrate.PIXEL_DECODED
    needs_image = True

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> DecodedFrames:
        return cls(sizing.n_future, sizing.image_key, sizing.image_size)

    def __init__(self, n_future: int, image_key: str, image_size: int):
        super().__init__()
        self.n_future, self.image_key, self.size = n_future, image_key, image_size
        self.patch = image_size // PATCHES_PER_SIDE
        self.stream = Stream(n_future * PATCHES_PER_SIDE ** 2, 3 * self.patch ** 2, clip=UNIT_RANGE)
        self.future_keys = (image_key,)

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        frames = inputs.batch[f"future.{self.image_key}"].to(inputs.observations[self.image_key].device)
        return patchify(frames.permute(0, 1, 4, 2, 3).float() / 127.5 - 1, self.patch)

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        frames = unpatchify(tokens, self.frames_in(tokens), 3, self.size, self.patch)
        return {"frames": ((frames + 1) / 2).clamp(0, 1)}


class LatentFrames(FutureSubstrate):
    """Codes of a small VAE fitted on the dataset's frames and then frozen; 2x2 latent cells per token.

    ``fit`` trains the autoencoder on the training frames; ``cache`` encodes every frame of a dataset once (kept in
    ``<dataset>/cache/`` for later runs with the same autoencoder), added as ``cache.pixel-latent`` so training
    reads codes by index instead of re-encoding images every step.
    """

    kind = Substrate.PIXEL_LATENT
    quantize = False
    needs_image = True

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> LatentFrames:
        return cls(sizing.n_future, sizing.image_key, sizing.image_size)

    def __init__(self, n_future: int, image_key: str, image_size: int):
        super().__init__()
        self.n_future, self.image_key = n_future, image_key
        # Half-width nets: 30 dB on MetaWorld frames in half the fit time of (32, 64, 128) at 32.6 dB.
        channels = (16, 32, 64) if not self.quantize else (16, 32, 64, 64)
        self.autoencoder = FrameAutoencoder(AutoencoderConfig(image_size=image_size, channels=channels,
                                                              latent_channels=8, quantize=self.quantize))
        self.autoencoder.requires_grad_(False)
        self.grid = self.autoencoder.grid[0]
        self.cell = 2 if not self.quantize else 1
        per_frame = (self.grid // self.cell) ** 2
        self.stream = self._stream(n_future * per_frame, 8 * self.cell ** 2)
        self.cache_key = f"cache.{self.kind.value}"
        self.future_keys = (self.cache_key,)

    def _stream(self, length: int, dim: int) -> Stream:
        return Stream(length, dim, clip=STANDARD_RANGE)

    def _encode(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        out, device = [], next(self.autoencoder.parameters()).device
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = torch.from_numpy(images[i:i + batch]).to(device).permute(0, 3, 1, 2).float() / 255
                out.append(self._codes(x).cpu().numpy())
        return np.concatenate(out)

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        z = self.autoencoder.encode(x)[:, None]  # [N, 1, c, h, w]
        return patchify(z, self.cell)

    def fit(self, dataset, steps: int, seed: int = 0) -> None:
        self.autoencoder.requires_grad_(True)
        self.autoencoder.fit(dataset.frames[self.image_key], steps, seed=seed)

    def cache(self, dataset) -> dict[str, np.ndarray]:
        """Codes of every frame, computed once per (autoencoder, dataset) and kept in ``<dataset>/cache/``."""
        images = dataset.frames[self.image_key]
        weights = [t.detach().cpu().numpy().tobytes() for t in self.autoencoder.state_dict().values()]
        return {self.cache_key: disk_cached(dataset, self.kind.value, [*weights, images.tobytes()],
                                            lambda: self._encode(images))}

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        codes = inputs.batch[f"future.{self.cache_key}"]  # [B, F, tokens_per_frame, dim]
        return codes.flatten(1, 2).to(inputs.observations[self.image_key].device)

    @torch.no_grad()
    def observe(self, inputs: SubstrateInputs) -> torch.Tensor:
        frames = inputs.batch[f"future.{self.image_key}"]  # raw [B, F, H, W, 3]
        b, f = frames.shape[:2]
        device = next(self.autoencoder.parameters()).device
        codes = self._codes(frames.flatten(0, 1).to(device).permute(0, 3, 1, 2).float() / 255)
        batch = {f"future.{self.cache_key}": codes.reshape(b, f, *codes.shape[1:])}
        return self.targets(SubstrateInputs(inputs.observations, batch, inputs.encoder))

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        b = tokens.shape[0]
        n = self.frames_in(tokens)
        z = unpatchify(tokens.reshape(b * n, -1, tokens.shape[-1]), 1, 8, self.grid, self.cell)[:, 0]
        frames = self.autoencoder.decode(z)
        return {"frames": frames.reshape(b, n, *frames.shape[1:])}
