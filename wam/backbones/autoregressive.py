"""Autoregressive backbone: a causal transformer over serialized streams, with a key/value cache.

The streams are laid out in the coupling's ``order`` after the context, each as ``[start, y_1 .. y_L]``: the
output at ``start`` predicts ``y_1``, the output at ``y_j`` predicts ``y_{j+1}``, and ``y_L`` is fed so that later
streams can read it. Continuous tokens are regressed (mean squared error, as GR-1 does for frames and actions),
discrete ones classified (cross-entropy). A stream sees the context, its own past tokens and the earlier streams
it ``reads``. Generation feeds one token at a time and reuses the keys and values of everything before it;
sampler steps do not apply (the number of passes is the number of generated tokens).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from wam.backbones.base import Stream, StreamBackbone, module_key, per_sample_error, regression_loss
from wam.nn.transformer import KVCache, Transformer, stream_mask


class AutoregressiveBackbone(StreamBackbone):
    """Causal transformer over ``context, [start_s, y_s]`` for every stream ``s`` in order."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], dropout: float = 0.1, order: tuple[str, ...] = ()):
        super().__init__(d_model, context_len, streams, reads, order)
        self.start = nn.ParameterDict({module_key(n): nn.Parameter(torch.randn(1, d_model) * 0.02) for n in self.streams})
        self.trunk = Transformer(d_model, n_layers, n_heads, dropout)
        self.n_layers = n_layers

    def _tokens(self, name: str, values: torch.Tensor | None, b: int) -> torch.Tensor:
        start = self.start[module_key(name)][None].expand(b, -1, -1)
        return start if values is None else torch.cat([start, self.embed_stream(name, values)], dim=1)

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
        mask = stream_mask(self.context_len, spans, self.reads, b, hide, causal=True, device=context.device)
        return self.trunk(torch.cat(tokens, dim=1), mask), spans

    def loss(self, context, targets, given=None, hide=None):
        h, spans = self.hidden(context, {**(given or {}), **targets}, hide)
        return {n: regression_loss(self.read_out(n, h[:, spans[n][0]:spans[n][1] - 1]), y, self.streams[n])
                for n, y in targets.items()}

    @torch.no_grad()
    def error(self, context, targets, given=None):
        h, spans = self.hidden(context, {**(given or {}), **targets})
        return sum(per_sample_error(self.read_out(n, h[:, spans[n][0]:spans[n][1] - 1]), y, self.streams[n])
                   for n, y in targets.items())

    @torch.no_grad()
    def sample(self, context, generate, steps=1, given=None, generator=None, partial=None, temperature: float = 0.0):
        return self.generate(context, generate, given, generator, temperature)[0]

    @torch.no_grad()
    def generate(self, context: torch.Tensor, generate: tuple[str, ...], given: Mapping[str, torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, temperature: float = 0.0, stop_before: str | None = None,
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, tuple[int, int]], KVCache]:
        """Incremental generation with a KV cache.

        Returns the generated streams, the hidden states of every token fed (context first), their spans and the
        cache. With ``stop_before`` generation halts when that stream's turn comes (a caller such as the VLM's
        action expert produces it instead).
        """
        given, b = dict(given or {}), context.shape[0]
        cache = KVCache(self.n_layers)
        spans: dict[str, tuple[int, int]] = {}
        hidden = [self._feed(context, cache, spans, None)]
        wanted = [n for n in self.order if n in given or n in generate]
        out: dict[str, torch.Tensor] = {}
        for i, n in enumerate(wanted):
            if n == stop_before:
                break
            later = any(n in self.reads[m] for m in wanted[i + 1:])
            if n in given:
                hidden.append(self._feed(self._tokens(n, given[n], b), cache, spans, n))
                continue
            values, h = [], self._feed(self._tokens(n, None, b), cache, spans, n)
            hidden.append(h)
            for j in range(self.streams[n].length):
                y = self._choose(n, self.read_out(n, h[:, -1:]), temperature, generator)
                values.append(y)
                if j + 1 < self.streams[n].length or later:
                    h = self._feed(self.embed[module_key(n)](y) + self.pos[module_key(n)][None, j:j + 1], cache, spans, n)
                    hidden.append(h)
            out[n] = torch.cat(values, dim=1)
        return out, torch.cat(hidden, dim=1), spans, cache

    def _choose(self, name: str, output: torch.Tensor, temperature: float, generator) -> torch.Tensor:
        stream = self.streams[name]
        if not stream.vocab:
            return output.clamp(-stream.clip, stream.clip) if stream.clip else output
        if temperature <= 0:
            return output.argmax(-1)
        probs = torch.softmax(output[:, 0] / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)

    def _feed(self, x: torch.Tensor, cache: KVCache, spans: dict[str, tuple[int, int]], name: str | None) -> torch.Tensor:
        """Append tokens ``x`` of stream ``name`` (None: the context) and return their hidden states."""
        b, t = x.shape[:2]
        past = len(cache)
        if name is not None:
            lo = spans.get(name, (past, past))[0]
            spans[name] = (lo, past + t)
        total = past + t
        allowed = torch.zeros(1, t, total, dtype=torch.bool, device=x.device)
        allowed[:, :, : self.context_len] = True
        if name is None:
            allowed[:, :, :t] = True
        else:
            lo = spans[name][0]
            rows = torch.arange(past, total, device=x.device)
            cols = torch.arange(total, device=x.device)
            allowed |= ((cols[None] >= lo) & (cols[None] <= rows[:, None]))[None]
            for other in self.reads[name]:
                if other in spans and other != name:
                    olo, ohi = spans[other]
                    allowed[:, :, olo:ohi] = True
        return self.trunk(x, allowed.expand(b, -1, -1), cache)
