"""Backbones: how the prediction is made. Each learns and samples named token streams (see ``base``).

Each family registers a builder under its anatomy value in ``BACKBONES``; what a family can do is declared in
``wam.anatomy.BACKBONE_CAPABILITIES``. A value without a builder is refused, never replaced by another family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from wam.anatomy import Backbone, SpecError
from wam.backbones.autoregressive import AutoregressiveBackbone, CachedContext
from wam.backbones.base import Stream, StreamBackbone
from wam.backbones.diffusion import DiffusionBackbone
from wam.backbones.query import HybridBackbone, JEPABackbone
from wam.backbones.vlm import VLMBackbone

__all__ = ["BACKBONES", "AutoregressiveBackbone", "BackboneSizing", "CachedContext", "DiffusionBackbone",
           "HybridBackbone", "JEPABackbone", "Stream", "StreamBackbone", "VLMBackbone", "build_backbone"]


@dataclass(frozen=True)
class BackboneSizing:
    """Everything a backbone is built from: the model's sizes and the coupling's streams, reads and order."""

    d_model: int
    n_layers: int
    n_heads: int
    context_len: int
    streams: Mapping[str, Stream]
    reads: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...]
    train_timesteps: int
    parameterization: str
    dropout: float
    frames: tuple[int, int]
    """(frames in the context, tokens per frame): where the context's frames lie in time."""

    @property
    def trunk(self) -> tuple:
        return self.d_model, self.n_layers, self.n_heads, self.context_len, self.streams, self.reads


BACKBONES: dict[Backbone, Callable[[BackboneSizing], nn.Module]] = {
    Backbone.DIFFUSION: lambda s: DiffusionBackbone(*s.trunk, s.train_timesteps, s.parameterization, s.dropout,
                                                    s.order),
    Backbone.HYBRID: lambda s: HybridBackbone(*s.trunk, s.train_timesteps, s.parameterization, s.dropout, s.order),
    Backbone.JEPA: lambda s: JEPABackbone(*s.trunk, dropout=s.dropout, order=s.order),
    # Frames placed in time (rotary positions), so deployments can stream them.
    Backbone.AUTOREGRESSIVE: lambda s: AutoregressiveBackbone(*s.trunk, s.dropout, s.order, frames=s.frames),
    Backbone.VLM: lambda s: VLMBackbone(*s.trunk, order=s.order, train_timesteps=s.train_timesteps,
                                        dropout=s.dropout),
}
"""Anatomy value -> builder."""


def build_backbone(kind: Backbone, config, context_len: int, streams: dict[str, Stream],
                   reads: dict[str, tuple[str, ...]], order: tuple[str, ...], tokens_per_frame: int = 1) -> nn.Module:
    """The backbone of family ``kind`` sized by ``config`` (a ``ModelConfig``); the context holds ``config.n_obs``
    frames of ``tokens_per_frame`` tokens, then the instruction."""
    if kind not in BACKBONES:
        raise SpecError(f"backbone {kind.value!r} has no registered implementation (registered: "
                        f"{', '.join(k.value for k in BACKBONES)})")
    return BACKBONES[kind](BackboneSizing(config.d_model, config.n_layers, config.n_heads, context_len, streams, reads,
                                          order, config.train_timesteps, config.parameterization, config.dropout,
                                          (config.n_obs, tokens_per_frame)))
