"""The context encoder: observation history and instruction -> context tokens ``[B, N_ctx, d]``."""

from __future__ import annotations

import torch
from torch import nn

from wam.nn.layers import ImageEncoder, InstructionEncoder


class ContextEncoder(nn.Module):
    """One token per observation key per history frame, plus the instruction (one bag-of-words token, or one token
    per word with ``instruction_words``).

    ``encode_frames`` is also what an encoder-only feature substrate applies to future frames, so the future
    targets live in exactly the space the policy reads.
    """

    def __init__(self, shapes: dict[str, list[int]], vocabulary: list[str], dim: int, n_obs: int,
                 image_channels: tuple[int, ...], instruction_words: int = 0):
        super().__init__()
        self.keys = sorted(shapes)
        self.encoders = nn.ModuleDict()
        for key in self.keys:
            shape = shapes[key]
            name = key.replace(".", "_")
            if len(shape) == 3:
                self.encoders[name] = ImageEncoder(dim, image_channels, image_size=shape[0])
            else:
                self.encoders[name] = nn.Sequential(nn.Linear(shape[0], dim), nn.LayerNorm(dim))
        self.instruction = InstructionEncoder(vocabulary, dim, instruction_words)
        self.n_tokens = n_obs * len(self.keys) + self.instruction.n_tokens
        self.pos = nn.Parameter(torch.randn(self.n_tokens, dim) * 0.02)

    def encode_frames(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """Normalized observations ``batch[prefix + key]`` of shape ``[B, T, ...]`` -> tokens ``[B, T, n_keys, d]``."""
        tokens = []
        for key in self.keys:
            x = batch[prefix + key]
            b, t = x.shape[:2]
            feats = self.encoders[key.replace(".", "_")](x.flatten(0, 1))
            tokens.append(feats.view(b, t, -1))
        return torch.stack(tokens, dim=2)

    def forward(self, batch: dict[str, torch.Tensor], instructions: list[str]) -> torch.Tensor:
        """Normalized observation history ``[B, n_obs, ...]`` per key plus instructions -> ``[B, N_ctx, d]``."""
        frames = self.encode_frames(batch).flatten(1, 2)
        words = self.instruction(instructions)
        return torch.cat([frames, words], dim=1) + self.pos[None]
