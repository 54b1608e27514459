"""A pre-norm transformer with an optional key/value cache and rotary positions, and the attention mask of named
token streams.

Autoregressive backbones feed a few tokens at a time and reuse the keys and values of everything before them,
which ``KVCache`` provides. With rotary positions (RoPE) attention depends only on the distance between two
tokens, so cached keys stay valid while the window of observations slides (see ``wam.deployment.streaming``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def stream_mask(context_len: int, spans: Mapping[str, tuple[int, int]], reads: Mapping[str, tuple[str, ...]],
                batch: int, hide: Mapping[tuple[str, str], torch.Tensor] | None = None, causal: bool = False,
                device: torch.device | str = "cpu",
                context_groups: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """Who may attend to whom, ``[B, T, T]`` with True = allowed (``scaled_dot_product_attention``'s convention).

    Context tokens see only the context (with ``context_groups``, only their own group: one observation frame, or
    the instruction). A stream sees the context, itself and the streams it ``reads``; ``hide[(reader, read)]`` is
    a ``[B]`` bool mask of samples in which ``reader`` must not see ``read``. With ``causal`` every stream token
    additionally sees nothing after itself (serialized streams).
    """
    length = max([context_len, *(hi for _, hi in spans.values())])
    allowed = torch.zeros(batch, length, length, dtype=torch.bool, device=device)
    allowed[:, :, :context_len] = True
    if context_groups is not None:
        allowed[:, :context_len, :context_len] = False
        for lo, hi in context_groups:
            allowed[:, lo:hi, lo:hi] = True
    for name, (lo, hi) in spans.items():
        allowed[:, lo:hi, lo:hi] = True
        for other in reads.get(name, ()):
            if other not in spans:
                continue
            olo, ohi = spans[other]
            allowed[:, lo:hi, olo:ohi] = True
            if hide and (name, other) in hide:
                allowed[hide[(name, other)].to(device), lo:hi, olo:ohi] = False
    if causal:  # the context is known up front and attends within itself fully; the streams are serialized
        order = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        order[:context_len, :context_len] = True
        allowed &= order
    return allowed


def rotary_tables(positions: torch.Tensor, dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``[T, dim / 2]`` of the rotary position embedding at integer ``positions [T]``."""
    half = dim // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.to(torch.float32)[:, None] * freqs[None]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Apply the rotary embedding ``tables`` to ``x [..., T, d_head]`` (half-split form)."""
    cos, sin = tables
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Keys (already rotated) and values of every layer for the tokens fed so far."""

    def __init__(self, n_layers: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def __len__(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def truncate(self, length: int) -> None:
        """Forget every token after the first ``length`` (to roll back a speculative continuation)."""
        self.keys = [None if k is None else k[:, :, :length] for k in self.keys]
        self.values = [None if v is None else v[:, :, :length] for v in self.values]

    def drop_front(self, count: int) -> None:
        """Forget the first ``count`` tokens (the oldest observation leaving a sliding window)."""
        self.keys = [None if k is None else k[:, :, count:] for k in self.keys]
        self.values = [None if v is None else v[:, :, count:] for v in self.values]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.keys, *self.values] if t is not None)


class Block(nn.Module):
    """Pre-norm self-attention + GELU MLP."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None = None,
                layer: int = 0, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:  # queries and keys together: on a CPU each operation costs more than its arithmetic
            q, k = rotate(qkv[:2], rope).unbind(0)
            v = qkv[2]
        else:
            q, k, v = qkv.unbind(0)
        if cache is not None:
            k, v = cache.extend(layer, k, v)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None],
                                              dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    """A stack of ``Block``s with a final LayerNorm; ``cache`` makes it incremental."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """``mask`` is ``[B, T_new, T_cached + T_new]`` (True = attend) or None for full attention; ``positions``
        ``[T_new]`` switches on rotary positions."""
        rope = None if positions is None else rotary_tables(positions.to(x.device), x.shape[-1] // self.blocks[0].heads)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache, i, rope)
        return self.norm(x)
