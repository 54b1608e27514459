"""Autoregressive backbone: a causal transformer over serialized streams, with a key/value cache.

The streams are laid out in the coupling's ``order`` after the context, each as ``[start, y_1 .. y_L]``: the
output at ``start`` predicts ``y_1``, the output at ``y_j`` predicts ``y_{j+1}``, and ``y_L`` is fed so that later
streams can read it. Continuous tokens are regressed (mean squared error, as GR-1 does for frames and actions),
discrete ones classified (cross-entropy). A stream sees the context, its own past tokens and the earlier streams
it ``reads``. Generation feeds one token at a time and reuses the keys and values of everything before it;
sampler steps do not apply (the number of passes is the number of generated tokens).

With ``frames = (n_frames, tokens_per_frame)`` the context is a sequence of observation frames followed by the
instruction, and time enters through rotary positions (frame ``f`` at position ``f``; the instruction and every
stream token at the newest frame's). Each frame (and the instruction) attends only within itself, and the streams
attend to all of them. A frame's keys and values therefore never change once computed, which is what lets a
streaming deployment (``wam.deployment.streaming``) keep them in a sliding-window cache: each control tick
encodes only the new observation, and the predicted streams are dropped from the cache again so the real
observation replaces them. ``CachedContext`` is that cache, accepted wherever a context tensor is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from wam.backbones.base import Stream, StreamBackbone, module_key, per_sample_error, regression_loss
from wam.nn import random
from wam.nn.transformer import KVCache, Transformer, stream_mask


@dataclass
class CachedContext:
    """A context kept in ``cache`` (keys and values of every layer) across control ticks.

    ``generate`` first appends ``frames`` (new observation frames, ``frame_size`` tokens each, the first at rotary
    position ``first_position``) for good, emptying ``frames``; then the ``instruction`` at ``position`` (the newest
    frame's), in the same pass. It continues with the streams and rolls the cache back to the frames, so the same
    cache serves the next tick. ``caps`` limits how many tokens of a stream are generated (a single-step
    deployment needs one action, not the whole chunk); the cap applies only when no later stream of the same call
    reads that stream.
    """

    cache: KVCache
    frames: torch.Tensor
    frame_size: int
    first_position: int
    instruction: torch.Tensor
    position: int
    caps: dict[str, int] = field(default_factory=dict)

    @property
    def shape(self) -> torch.Size:
        return self.instruction.shape

    @property
    def device(self) -> torch.device:
        return self.instruction.device


@dataclass
class ContextPrefix:
    """Context tokens not yet in the cache; they go through the trunk in the same pass as the first stream token."""

    tokens: torch.Tensor
    group_sizes: list[int]
    """Consecutive groups of tokens (a frame each, then the instruction) that attend only within themselves."""
    positions: torch.Tensor | None
    """The rotary position of every token (None: the backbone places nothing in time)."""


@dataclass
class GenerationStart:
    """Where a ``generate`` call starts: the cache, what to feed first, and how to leave the cache afterwards."""

    cache: KVCache
    prefix: ContextPrefix
    now: int | None
    """Rotary position of the generated tokens: the newest frame's (None: no time positions)."""
    rollback: int | None
    """Cache length to roll back to after generating (a ``CachedContext`` keeps its frames, not the prediction)."""
    caps: Mapping[str, int]


class AutoregressiveBackbone(StreamBackbone):
    """Causal transformer over ``context, [start_s, y_s]`` for every stream ``s`` in order."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], dropout: float = 0.1, order: tuple[str, ...] = (),
                 frames: tuple[int, int] | None = None):
        super().__init__(d_model, context_len, streams, reads, order)
        self.start = nn.ParameterDict({module_key(n): nn.Parameter(torch.randn(1, d_model) * 0.02) for n in self.streams})
        self.trunk = Transformer(d_model, n_layers, n_heads, dropout)
        self.n_layers, self.frames = n_layers, frames

    # -- layout -------------------------------------------------------------------------------------------------
    def _context_layout(self, device) -> tuple[list[tuple[int, int]] | None, torch.Tensor | None]:
        """Attention groups and rotary positions of the context tokens (None, None without ``frames``)."""
        if self.frames is None:
            return None, None
        n, k = self.frames
        groups = [(f * k, (f + 1) * k) for f in range(n)] + [(n * k, self.context_len)]
        positions = torch.cat([torch.arange(n, device=device).repeat_interleave(k),
                               torch.full((self.context_len - n * k,), n - 1, device=device)])
        return groups, positions

    def _positions(self, count: int, now: int | None, device) -> torch.Tensor | None:
        return None if now is None else torch.full((count,), now, device=device)

    def _tokens(self, name: str, values: torch.Tensor | None, b: int) -> torch.Tensor:
        start = self.start[module_key(name)][None].expand(b, -1, -1)
        return start if values is None else torch.cat([start, self.embed_stream(name, values)], dim=1)

    # -- training and scoring: one teacher-forced pass -------------------------------------------------------------
    def hidden(self, context: torch.Tensor, values: Mapping[str, torch.Tensor],
               hide: Mapping[tuple[str, str], torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, dict[str, tuple[int, int]]]:
        """Teacher-forced pass over every stream in ``values``: hidden states and each stream's token span."""
        b = context.shape[0]
        tokens, spans, start = [context], {}, self.context_len
        for n in self.order:
            if n in values:
                x = self._tokens(n, values[n], b)
                tokens.append(x)
                spans[n] = (start, start + x.shape[1])
                start += x.shape[1]
        groups, positions = self._context_layout(context.device)
        if positions is not None:
            positions = torch.cat([positions, self._positions(start - self.context_len, self.frames[0] - 1,
                                                              context.device)])
        mask = stream_mask(self.context_len, spans, self.reads, b, hide, causal=True, device=context.device,
                           context_groups=groups)
        return self.trunk(torch.cat(tokens, dim=1), mask, positions=positions), spans

    def loss(self, context, targets, given=None, hide=None):
        h, spans = self.hidden(context, {**(given or {}), **targets}, hide)
        return {n: regression_loss(self.read_out(n, h[:, spans[n][0]:spans[n][1] - 1]), y, self.streams[n])
                for n, y in targets.items()}

    @torch.no_grad()
    def error(self, context, targets, given=None):
        h, spans = self.hidden(context, {**(given or {}), **targets})
        return sum(per_sample_error(self.read_out(n, h[:, spans[n][0]:spans[n][1] - 1]), y, self.streams[n])
                   for n, y in targets.items())

    # -- generation ------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, context, generate, steps=1, given=None, generator=None, partial=None, lengths=None,
               temperature: float = 0.0):
        return self.generate(context, generate, given, generator, temperature, lengths=lengths)[0]

    def feed_context(self, x: torch.Tensor, cache: KVCache, sizes: list[int],
                     positions: torch.Tensor | None) -> torch.Tensor:
        """Append context tokens to ``cache`` in one pass: consecutive groups of ``sizes`` tokens (frames, the
        instruction) that attend only within themselves, at rotary ``positions`` (one per token)."""
        return self._feed(x[:, :0], cache, {}, None, len(cache) + x.shape[1], 0, ContextPrefix(x, sizes, positions))

    @torch.no_grad()
    def generate(self, context: torch.Tensor | CachedContext, generate: tuple[str, ...],
                 given: Mapping[str, torch.Tensor] | None = None, generator: torch.Generator | None = None,
                 temperature: float = 0.0, stop_before: str | None = None, lengths: Mapping[str, int] | None = None,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, tuple[int, int]], KVCache]:
        """Incremental generation with a KV cache.

        Returns the generated streams, the hidden states of every token fed (context first; for a
        ``CachedContext`` the new frames and the instruction), their spans and the cache. With ``stop_before``
        generation halts when that stream's turn comes (a caller such as the VLM's action expert produces it
        instead). ``lengths`` shortens the prediction horizon of a stream. The context goes through the trunk in
        the same pass as the first stream token: on a CPU every pass reads all the weights, so a control tick costs
        one pass per generated token and no more.
        """
        given, b = dict(given or {}), context.shape[0]
        start = self._start(context)
        cache, now, caps, prefix = start.cache, start.now, start.caps, start.prefix
        context_end = len(cache) + prefix.tokens.shape[1]
        spans: dict[str, tuple[int, int]] = {}
        hidden: list[torch.Tensor] = []
        wanted = [n for n in self.order if n in given or n in generate]
        out: dict[str, torch.Tensor] = {}
        for i, n in enumerate(wanted):
            if n == stop_before:
                break
            later = any(n in self.reads[m] for m in wanted[i + 1:])
            if n in given:
                hidden.append(self._feed(self._tokens(n, given[n], b), cache, spans, n, context_end, now, prefix))
                prefix = None
                continue
            length = self.length(n, lengths)
            if not later:  # a single-step deployment needs only the first action
                length = min(length, caps.get(n, length))
            values, h = [], self._feed(self._tokens(n, None, b), cache, spans, n, context_end, now, prefix)
            prefix = None
            hidden.append(h)
            for j in range(length):
                y = self._choose(n, self.read_out(n, h[:, -1:]), temperature, generator)
                values.append(y)
                if j + 1 < length or later:
                    h = self._feed(self.embed[module_key(n)](y) + self.pos[module_key(n)][None, j:j + 1], cache,
                                   spans, n, context_end, now)
                    hidden.append(h)
            out[n] = torch.cat(values, dim=1)
        if prefix is not None:  # no stream was fed: the context still goes into the cache
            hidden.append(self.feed_context(prefix.tokens, cache, prefix.group_sizes, prefix.positions))
        if start.rollback is not None:
            cache.truncate(start.rollback)  # the predicted streams leave; the next real observation takes their place
        return out, torch.cat(hidden, dim=1), spans, cache

    def _start(self, context: torch.Tensor | CachedContext) -> GenerationStart:
        """A fresh cache for a context tensor; for a ``CachedContext``, its cache, with its new frames and the
        instruction to feed (the frames for good: a second call on the same context reuses them)."""
        if not isinstance(context, CachedContext):
            groups, positions = self._context_layout(context.device)
            sizes = [hi - lo for lo, hi in groups] if groups else [self.context_len]
            return GenerationStart(KVCache(self.n_layers), ContextPrefix(context, sizes, positions),
                                   now=None if self.frames is None else self.frames[0] - 1, rollback=None, caps={})
        cache, now = context.cache, context.position
        n_frames, n_words = context.frames.shape[1] // context.frame_size, context.instruction.shape[1]
        rollback = len(cache) + context.frames.shape[1]
        positions = torch.cat([context.first_position + torch.arange(n_frames).repeat_interleave(context.frame_size),
                               torch.full((n_words,), now)])
        prefix = ContextPrefix(torch.cat([context.frames, context.instruction], dim=1),
                               [context.frame_size] * n_frames + [n_words], positions)
        context.frames = context.frames[:, :0]
        return GenerationStart(cache, prefix, now, rollback, context.caps)

    def _choose(self, name: str, output: torch.Tensor, temperature: float, generator) -> torch.Tensor:
        stream = self.streams[name]
        if not stream.vocab:
            return output.clamp(-stream.clip, stream.clip) if stream.clip else output
        if temperature <= 0:
            return output.argmax(-1)
        probs = torch.softmax(output[:, 0] / temperature, dim=-1)
        return random.multinomial(probs, generator)

    def _feed(self, x: torch.Tensor, cache: KVCache, spans: dict[str, tuple[int, int]], name: str | None,
              context_end: int, now: int | None,
              prefix: ContextPrefix | None = None) -> torch.Tensor:
        """Append tokens ``x`` of stream ``name`` after a context ending at cache index ``context_end``; context
        tokens still to be fed (``prefix``) go first, in the same pass."""
        b, t = x.shape[:2]
        p = 0 if prefix is None else prefix.tokens.shape[1]
        past = len(cache)
        total = past + p + t
        allowed = torch.zeros(1, p + t, total, dtype=torch.bool, device=x.device)
        lo = 0
        for size in (prefix.group_sizes if prefix else []):  # context groups see only themselves
            allowed[:, lo:lo + size, past + lo:past + lo + size] = True
            lo += size
        if t:
            start = spans.get(name, (past + p, past + p))[0]
            spans[name] = (start, total)
            allowed[:, p:, :context_end] = True
            rows = torch.arange(past + p, total, device=x.device)
            cols = torch.arange(total, device=x.device)
            allowed[:, p:] |= ((cols[None] >= start) & (cols[None] <= rows[:, None]))[None]
            for other in self.reads[name]:
                if other in spans and other != name:
                    olo, ohi = spans[other]
                    allowed[:, p:, olo:ohi] = True
        positions = self._positions(t, now, x.device)
        if prefix is not None:
            x = torch.cat([prefix.tokens, x], dim=1)
            positions = None if prefix.positions is None else torch.cat([prefix.positions.to(x.device), positions])
        return self.trunk(x, allowed.expand(b, -1, -1), cache, positions)
