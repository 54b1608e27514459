"""The context encoder: observation history and instruction -> context tokens ``[B, N_ctx, d]``."""

from __future__ import annotations

import torch
from torch import nn

from wam.nn.layers import ImageEncoder, InstructionEncoder


class ContextEncoder(nn.Module):
    """One token per observation key per history frame, then the instruction (one bag-of-words token, or one token
    per word with ``instruction_words``).

    Positions are learned per slot by default. With ``time_positions`` a token carries only its key (and word)
    embedding and the backbone adds time with rotary positions; a frame's tokens then do not depend on where the
    frame sits in the history, so a streaming deployment encodes each frame once (``frame_tokens``) and keeps it.

    ``encode_frames`` is also what an encoder-only feature substrate applies to future frames, so the future
    targets live in exactly the space the policy reads.
    """

    def __init__(self, shapes: dict[str, list[int]], vocabulary: list[str], dim: int, n_obs: int,
                 image_channels: tuple[int, ...], instruction_words: int = 0, image_tokens: int = 1,
                 time_positions: bool = False, image_keypoints: int = 0):
        super().__init__()
        self.keys = sorted(shapes)
        self.encoders = nn.ModuleDict()
        for key in self.keys:
            shape = shapes[key]
            name = key.replace(".", "_")
            if len(shape) == 3:
                self.encoders[name] = ImageEncoder(dim, image_channels, shape[0], image_tokens, image_keypoints)
            else:
                self.encoders[name] = nn.Sequential(nn.Linear(shape[0], dim), nn.LayerNorm(dim), nn.Unflatten(1, (1, dim)))
        self.instruction = InstructionEncoder(vocabulary, dim, instruction_words)
        self.n_obs, self.time_positions = n_obs, time_positions
        self.tokens_per_frame = sum(image_tokens if len(shapes[k]) == 3 else 1 for k in self.keys)
        self.n_tokens = n_obs * self.tokens_per_frame + self.instruction.n_tokens
        if time_positions:
            self.key_embed = nn.Parameter(torch.randn(self.tokens_per_frame, dim) * 0.02)
            self.word_pos = nn.Parameter(torch.randn(self.instruction.n_tokens, dim) * 0.02)
        else:
            self.pos = nn.Parameter(torch.randn(self.n_tokens, dim) * 0.02)

    def encode_frames(self, batch: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """Normalized observations ``batch[prefix + key]`` of shape ``[B, T, ...]`` -> tokens
        ``[B, T, tokens_per_frame, d]`` (one per vector key, ``image_tokens`` per image key)."""
        tokens = []
        for key in self.keys:
            x = batch[prefix + key]
            b, t = x.shape[:2]
            feats = self.encoders[key.replace(".", "_")](x.flatten(0, 1))  # [B * T, n, d]
            tokens.append(feats.view(b, t, *feats.shape[1:]))
        return torch.cat(tokens, dim=2)

    def frame_tokens(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Context tokens of the frames in ``batch`` (``time_positions`` only): ``[B, T * tokens_per_frame, d]``."""
        return (self.encode_frames(batch) + self.key_embed).flatten(1, 2)

    def instruction_tokens(self, instructions: list[str]) -> torch.Tensor:
        """Context tokens of the instructions (``time_positions`` only): ``[B, n_instruction_tokens, d]``."""
        return self.instruction(instructions) + self.word_pos

    def forward(self, batch: dict[str, torch.Tensor], instructions: list[str]) -> torch.Tensor:
        """Normalized observation history ``[B, n_obs, ...]`` per key plus instructions -> ``[B, N_ctx, d]``."""
        if self.time_positions:
            return torch.cat([self.frame_tokens(batch), self.instruction_tokens(instructions)], dim=1)
        frames = self.encode_frames(batch).flatten(1, 2)
        words = self.instruction(instructions)
        return torch.cat([frames, words], dim=1) + self.pos[None]
