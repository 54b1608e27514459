"""What every backbone shares: named token streams, their embeddings, and the learn / sample / error contract.

A backbone models token streams given context tokens ``[B, N_ctx, d]``. A stream is a named ``[B, L, dim]``
tensor (``action``, ``future.pixel-decoded``, ...), or ``[B, L]`` token ids when it is discrete. The coupling
says who reads whom (``reads``) and in which order sequential backbones serialize the streams (``order``):

- ``loss(context, targets, given, hide)`` -> one loss per target stream;
- ``sample(context, generate, steps, given, ..., lengths)`` -> the generated streams (``lengths[name] = n``
  generates only the first ``n`` tokens of a stream: a shorter prediction horizon);
- ``error(context, targets, given)`` -> ``[B]``, a per-sample negative-likelihood proxy (lower is likelier).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Stream:
    """Shape and kind of one token stream."""

    length: int
    dim: int
    vocab: int = 0
    """Discrete when > 0: values are token ids in ``[0, vocab)`` and ``dim`` is unused."""
    clip: float = 0.0
    """Generated values (and a sampler's intermediate clean estimates) stay within ``[-clip, clip]``; 0: unbounded.
    1 for normalized actions and images, a few units for standardized substrates."""
    regress: bool = False
    """Predicted in one pass from learned queries and read as trunk activations (a feature tap), never sampled."""


class StreamBackbone(nn.Module):
    """Embeddings in and out of the model width for every stream; subclasses add the trunk and the objective."""

    def __init__(self, d_model: int, context_len: int, streams: Mapping[str, Stream],
                 reads: Mapping[str, tuple[str, ...]], order: tuple[str, ...] = ()):
        super().__init__()
        self.d_model, self.context_len = d_model, context_len
        self.streams = dict(streams)
        self.reads = {name: tuple(r for r in reads.get(name, ()) if r in self.streams) for name in self.streams}
        self.order = tuple(n for n in order if n in self.streams) + tuple(n for n in self.streams if n not in order)
        self.embed = nn.ModuleDict({module_key(n): (nn.Embedding(s.vocab, d_model) if s.vocab else nn.Linear(s.dim, d_model))
                                    for n, s in self.streams.items()})
        self.head = nn.ModuleDict({module_key(n): nn.Linear(d_model, s.vocab or s.dim) for n, s in self.streams.items()})
        self.pos = nn.ParameterDict({module_key(n): nn.Parameter(torch.randn(s.length, d_model) * 0.02)
                                     for n, s in self.streams.items()})

    def length(self, name: str, lengths: Mapping[str, int] | None) -> int:
        """Tokens of ``name`` to generate: all of them, or the prefix ``lengths`` asks for."""
        return min(self.streams[name].length, (lengths or {}).get(name, self.streams[name].length))

    def embed_stream(self, name: str, values: torch.Tensor) -> torch.Tensor:
        return self.embed[module_key(name)](values) + self.pos[module_key(name)][None, : values.shape[1]]

    def read_out(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        return self.head[module_key(name)](hidden)

    def loss(self, context: torch.Tensor, targets: Mapping[str, torch.Tensor],
             given: Mapping[str, torch.Tensor] | None = None,
             hide: Mapping[tuple[str, str], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def sample(self, context: torch.Tensor, generate: tuple[str, ...], steps: int,
               given: Mapping[str, torch.Tensor] | None = None, generator: torch.Generator | None = None,
               partial: Mapping[str, int] | None = None,
               lengths: Mapping[str, int] | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def error(self, context: torch.Tensor, targets: Mapping[str, torch.Tensor],
              given: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError


def module_key(name: str) -> str:
    """Module dictionaries do not accept '.' in keys; stream names such as 'future.geometric' contain one."""
    return name.replace(".", "__")


def regression_loss(prediction: torch.Tensor, target: torch.Tensor, stream: Stream) -> torch.Tensor:
    """Cross-entropy for discrete streams, mean squared error for continuous ones."""
    if stream.vocab:
        return nn.functional.cross_entropy(prediction.flatten(0, 1), target.flatten())
    return nn.functional.mse_loss(prediction, target)


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor, stream: Stream) -> torch.Tensor:
    """``[B]`` version of ``regression_loss``."""
    if stream.vocab:
        ce = nn.functional.cross_entropy(prediction.transpose(1, 2), target, reduction="none")
        return ce.mean(1)
    return (prediction - target).pow(2).flatten(1).mean(1)
