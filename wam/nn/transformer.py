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
    """Keys (already rotated) and values of every layer for the tokens fed so far.

    They live in preallocated buffers: appending writes in place and forgetting the oldest tokens only moves a
    start index, so a control tick copies its new tokens and not the whole cache (as concatenation would). The
    live part moves back to the front when a buffer fills, and buffers grow only when the live part outgrows half
    of them, so a sliding window keeps memory bounded.
    """

    def __init__(self, n_layers: int):
        self._keys: list[torch.Tensor | None] = [None] * n_layers
        self._values: list[torch.Tensor | None] = [None] * n_layers
        self._start = 0  # first live token, the same in every layer
        self._ends = [0] * n_layers  # one past the last live token, per layer (layers are fed one after another)

    def __len__(self) -> int:
        return self._ends[0] - self._start

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k, v [B, heads, T, d_head]`` to ``layer``; returns all of that layer's live keys and values."""
        keys, end = self._keys[layer], self._ends[layer]
        if keys is None or end + k.shape[2] > keys.shape[2]:
            self._reserve(layer, k, v)
            keys, end = self._keys[layer], self._ends[layer]
        new_end = end + k.shape[2]
        keys[:, :, end:new_end] = k
        self._values[layer][:, :, end:new_end] = v
        self._ends[layer] = new_end
        return keys[:, :, self._start:new_end], self._values[layer][:, :, self._start:new_end]

    def _reserve(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Make room for ``k``: move the live tokens of every layer to the front, in buffers twice what they need."""
        live, extra = len(self), k.shape[2]
        for i in range(len(self._keys)):
            old_k, old_v = self._keys[i], self._values[i]
            length = self._ends[i] - self._start if old_k is not None else 0
            capacity = 2 * (live + extra)
            if old_k is None or capacity > old_k.shape[2]:
                new_k = k.new_empty(*k.shape[:2], capacity, k.shape[3])
                new_v = v.new_empty(*v.shape[:2], capacity, v.shape[3])
            else:
                new_k, new_v = old_k, old_v
            if length:  # clone: source and destination may overlap when compacting in place
                new_k[:, :, :length] = old_k[:, :, self._start:self._ends[i]].clone()
                new_v[:, :, :length] = old_v[:, :, self._start:self._ends[i]].clone()
            self._keys[i], self._values[i], self._ends[i] = new_k, new_v, length
        self._start = 0

    def truncate(self, length: int) -> None:
        """Forget every token after the first ``length`` (to roll back a speculative continuation)."""
        self._ends = [min(end, self._start + length) for end in self._ends]

    def drop_front(self, count: int) -> None:
        """Forget the first ``count`` tokens (the oldest observation leaving a sliding window)."""
        self._start = min(self._start + count, self._ends[0])

    def nbytes(self) -> int:
        """Bytes held, buffers included (what a long episode must keep bounded)."""
        return sum(t.numel() * t.element_size() for t in [*self._keys, *self._values] if t is not None)


class Dropout(nn.Module):
    """Inverted dropout with a cheaper mask than ``nn.Dropout`` on a CPU.

    torch's CPU ``bernoulli_`` draws one number per element from a serial generator, which made dropout about a
    fifth of a training step of the default presets (17 ms for a 64x40x512 activation on two threads, against
    0.8 ms for a multiplication). Here every 64-bit draw of torch's generator yields four 16-bit uniforms, one per
    element: the same generator (so ``torch.manual_seed`` governs it), a quarter of the draws, and a drop
    probability exact to 1/65536.
    """

    LEVELS = 1 << 16

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.threshold = round(p * self.LEVELS) - self.LEVELS // 2  # kept where a signed 16-bit draw is >= this
        self.scale = 1 / (1 - p) if p < 1 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
        keep = words.view(torch.int16)[:x.numel()].view(x.shape) >= self.threshold
        return x * keep.to(x.dtype).mul_(self.scale)


class Block(nn.Module):
    """Pre-norm self-attention + GELU MLP."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), Dropout(dropout), nn.Linear(4 * dim, dim))
        self.drop = Dropout(dropout)

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
        attn = self.attend(q, k, v, None if mask is None else mask[:, None])
        x = x + self.drop(self.out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Scaled dot-product attention; in training with dropout, written out so that the attention weights are
        dropped with ``Dropout``'s cheap mask (on a CPU torch's fused kernel draws with the slow ``bernoulli_`` and
        falls back to the same written-out arithmetic anyway; on a GPU the ``[B, H, T, T]`` weights of these short
        sequences cost little)."""
        if not (self.training and self.dropout):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        weights = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if mask is not None:
            weights = weights.masked_fill(~mask, float("-inf"))
        return self.drop(weights.softmax(-1)) @ v


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
