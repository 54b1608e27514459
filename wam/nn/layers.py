"""Small building blocks shared by substrates and backbones: an image encoder, an instruction encoder, augmentation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ImageEncoder(nn.Module):
    """A compact conv net: ``[B, 3, H, W]`` -> ``[B, tokens, d]``; four stride-2 stages, GroupNorm and SiLU.

    Small on purpose: at 64x64 it runs in about a millisecond per frame on one CPU core, and the future features
    that encoder-only substrates regress are its outputs. With ``tokens = 1`` the whole last feature map is
    projected to one vector; with ``tokens = g * g`` it is pooled to a ``g x g`` grid and every cell becomes a token
    (with a learned position); with ``keypoints = K`` the one vector is read from K spatial-softmax keypoints of the
    last feature map instead (Levine et al. 2016, the readout of robomimic's and Diffusion Policy's image encoders):
    a 1x1 convolution gives K maps, each becomes the expected ``(x, y)`` of its softmax over positions, so where a
    thing is reaches the backbone as coordinates that move smoothly with it.
    """

    def __init__(self, dim: int, channels: tuple[int, ...] = (16, 32, 64, 128), image_size: int = 64,
                 tokens: int = 1, keypoints: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = image_size
        for _ in channels:
            side = (side + 1) // 2  # a 3x3 convolution of stride 2 and padding 1 halves a side, rounding up
        self.grid = math.isqrt(tokens)
        if self.grid ** 2 != tokens or not 1 <= self.grid <= side:
            raise ValueError(f"image_tokens={tokens} must be a square number from 1 to {side * side} (the last "
                             f"feature map is {side}x{side})")
        self.tokens, self.keypoints = tokens, keypoints  # keypoints read one token: ModelConfig checks tokens == 1
        if keypoints:
            self.keypoint_maps = nn.Conv2d(c_in, keypoints, 1)
            ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
            self.register_buffer("positions", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)
            self.proj = nn.Sequential(nn.Linear(2 * keypoints, dim), nn.LayerNorm(dim))
        elif tokens == 1:
            self.proj = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, dim), nn.LayerNorm(dim))
        else:
            self.pool = nn.AdaptiveAvgPool2d(self.grid)
            self.proj = nn.Sequential(nn.Linear(c_in, dim), nn.LayerNorm(dim))
            self.pos = nn.Parameter(torch.randn(tokens, dim) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.conv(images)
        if self.keypoints:
            return self.proj(self.keypoint_coordinates(features).flatten(1))[:, None]
        if self.tokens == 1:
            return self.proj(features)[:, None]
        return self.proj(self.pool(features).flatten(2).transpose(1, 2)) + self.pos

    def keypoint_coordinates(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, C, side, side]`` last feature maps -> ``[B, K, 2]``: each keypoint map's expected ``(x, y)`` in
        [-1, 1] under its softmax over positions."""
        attention = self.keypoint_maps(features).flatten(2).softmax(-1)  # [B, K, side * side]
        return attention @ self.positions


class InstructionEncoder(nn.Module):
    """An instruction string over a fixed vocabulary -> one bag-of-words token ``[B, 1, d]``, or with ``words > 0``
    one token per word ``[B, words, d]`` (padded with a learned pad token, truncated beyond ``words``), the form a
    VLM-style backbone reads. Unknown words map to index 0."""

    def __init__(self, vocabulary: list[str], dim: int, words: int = 0):
        super().__init__()
        self.vocabulary = ["<unk>", *vocabulary]
        self._index = {w: i for i, w in enumerate(self.vocabulary)}
        self.embed = nn.EmbeddingBag(len(self.vocabulary), dim, mode="mean")
        self.words = words
        if words:
            self.pad = nn.Parameter(torch.zeros(dim))

    @property
    def n_tokens(self) -> int:
        return self.words or 1

    def forward(self, instructions: list[str]) -> torch.Tensor:
        device = self.embed.weight.device
        ids = [torch.tensor([self._index.get(w, 0) for w in text.split()] or [0]) for text in instructions]
        if self.words:
            tokens = self.pad.expand(len(ids), self.words, -1).clone()
            for row, word_ids in enumerate(ids):
                word_ids = word_ids[: self.words].to(device)
                tokens[row, : len(word_ids)] = F.embedding(word_ids, self.embed.weight)
            return tokens
        offsets = torch.tensor([0, *[len(i) for i in ids[:-1]]]).cumsum(0)
        return self.embed(torch.cat(ids).to(device), offsets.to(device))[:, None]


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ-style augmentation: pad by replication and crop back at a random offset, one offset per sample.

    ``images`` is ``[B, T, C, H, W]``; all T frames of a sample move together so motion between them is preserved.
    """
    if pad == 0:
        return images
    b, t, c, h, w = images.shape
    padded = F.pad(images.reshape(b, t * c, h, w), (pad,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b), device=images.device)
    rows = (torch.arange(h, device=images.device)[None] + dy[:, None])  # [B, H]
    cols = (torch.arange(w, device=images.device)[None] + dx[:, None])  # [B, W]
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # [B, H, W, T*C]
    return out.permute(0, 3, 1, 2).reshape(b, t, c, h, w)


def colour_jitter(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Colour augmentation (kornia's ``ColorJitter``): brightness, contrast and saturation each scaled by a factor
    drawn from U(1 - strength, 1 + strength) per sample, the same for every frame of the sample.

    ``images`` is ``[B, T, H, W, C]`` in 0..255 (the dataset's layout); the result has that layout, as float.
    Hue is left alone: kornia's hue jitter converts to HSV and costs more than a training step of a small model.
    """
    from kornia.augmentation import ColorJitter, VideoSequential

    jitter = VideoSequential(ColorJitter(strength, strength, strength, 0.0, p=1.0), data_format="BTCHW",
                             same_on_frame=True)
    return jitter(images.float().div(255.0).permute(0, 1, 4, 2, 3)).permute(0, 1, 3, 4, 2).mul(255.0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) diffusion timesteps ``[B]`` -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
