"""Backbones: how the prediction is made. Each learns and samples named token streams (see ``base``)."""

from __future__ import annotations

from wam.anatomy import Backbone
from wam.backbones.autoregressive import AutoregressiveBackbone, CachedContext
from wam.backbones.base import Stream, StreamBackbone
from wam.backbones.diffusion import DiffusionBackbone
from wam.backbones.query import HybridBackbone, JEPABackbone
from wam.backbones.vlm import VLMBackbone

__all__ = ["AutoregressiveBackbone", "CachedContext", "DiffusionBackbone", "HybridBackbone", "JEPABackbone", "Stream",
           "StreamBackbone", "VLMBackbone", "build_backbone"]


def build_backbone(kind: Backbone, config, context_len: int, streams: dict[str, Stream],
                   reads: dict[str, tuple[str, ...]], order: tuple[str, ...], tokens_per_frame: int = 1):
    """The backbone of family ``kind`` sized by ``config`` (a ``ModelConfig``); the context holds ``config.n_obs``
    frames of ``tokens_per_frame`` tokens, then the instruction."""
    size = (config.d_model, config.n_layers, config.n_heads, context_len, streams, reads)
    if kind is Backbone.DIFFUSION:
        return DiffusionBackbone(*size, config.train_timesteps, config.parameterization, config.dropout, order)
    if kind is Backbone.HYBRID:
        return HybridBackbone(*size, config.train_timesteps, config.parameterization, config.dropout, order)
    if kind is Backbone.JEPA:
        return JEPABackbone(*size, dropout=config.dropout, order=order)
    if kind is Backbone.AUTOREGRESSIVE:  # frames in time (rotary positions), so deployments can stream them
        return AutoregressiveBackbone(*size, config.dropout, order, frames=(config.n_obs, tokens_per_frame))
    return VLMBackbone(*size, order=order, train_timesteps=config.train_timesteps, dropout=config.dropout)
