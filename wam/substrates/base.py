"""What every substrate provides: the future as tokens, the dataset inputs it needs, and an optional decoder.

A substrate turns a batch of training windows into future tokens ``[B, L, dim]`` (one stream named
``future.<kind>``; a conjunction contributes one stream per component). ``future_keys`` are the dataset features
it reads at the future offsets ``t + k`` (``future.<key>`` in the batch), ``anchor_keys`` those it reads at ``t``.
Substrates that must see the training data first (an autoencoder to fit, statistics to measure) do it in ``fit``;
``cache`` returns per-frame arrays to add to any dataset (training or held-out), so training reads codes by index
instead of re-encoding images every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wam.anatomy import Substrate
from wam.backbones.base import Stream

UNIT_RANGE = 1.0  # tokens in [-1, 1]: pixels, maps
STANDARD_RANGE = 6.0  # standardized or layer-normed tokens (measured on MetaWorld: |x| <= 5)


@dataclass(frozen=True)
class SubstrateSizing:
    """What a substrate may size itself by when a model is built (``FutureSubstrate.build``)."""

    n_future: int
    """Future frames predicted (the model's ``future_offsets``)."""
    image_key: str | None
    """The observed camera image, if any."""
    image_size: int
    """Its side in pixels (64 when there is no image: geometric tokens still scale flows by it)."""
    discrete: bool
    """Whether the backbone takes image codes as ids (``BackboneCapabilities.discrete_tokens``)."""
    d_model: int
    encoder: nn.Module
    """The model's observation encoder (feature substrates predict its features)."""


@dataclass
class SubstrateInputs:
    """What ``targets`` may read: normalized observations (history and ``future.*``), the raw batch, the encoder."""

    observations: dict[str, torch.Tensor]
    batch: dict[str, Any]
    encoder: nn.Module


class FutureSubstrate(nn.Module):
    """Base class; subclasses set ``kind`` and ``stream`` and implement ``build`` and ``targets``."""

    kind: Substrate
    stream: Stream
    needs_image: bool = False
    """Whether it predicts images, so the model must observe one."""
    future_keys: tuple[str, ...] = ()
    anchor_keys: tuple[str, ...] = ()
    reads_observations: bool = False
    """Whether the targets are computed from the future observation frames (the model then normalizes them)."""

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> FutureSubstrate:
        """The substrate sized for a model."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return f"future.{self.kind.value}"

    @property
    def has_decoder(self) -> bool:
        return type(self).decode is not FutureSubstrate.decode

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        raise NotImplementedError

    @property
    def observable(self) -> bool:
        """Whether a deployed robot can compute the targets from its own observations (see ``observe``)."""
        return (type(self).observe is not FutureSubstrate.observe or self.reads_observations
                or all(k.startswith("observation.") for k in self.future_keys))

    def observe(self, inputs: SubstrateInputs) -> torch.Tensor:
        """The targets computed from observations alone (``future.<observation key>`` in ``inputs``), as a deployed
        robot can: what adaptive chunking compares a prediction with."""
        if not self.observable:
            raise ValueError(f"substrate {self.kind.value!r} is built from simulator ground truth that a deployed "
                             "robot does not observe; adaptive chunking needs a pixel or feature substrate")
        return self.targets(inputs)

    def frames_in(self, tokens: torch.Tensor) -> int:
        """How many future frames ``tokens`` hold (fewer than ``n_future`` under a shortened prediction horizon)."""
        return tokens.shape[1] * self.n_future // self.stream.length

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokens -> something to inspect (frames, keypoints, maps); substrates without a decoder raise."""
        raise NotImplementedError(f"substrate {self.kind.value!r} has no decoder")

    def fit(self, dataset, steps: int, seed: int = 0) -> None:
        """Fit whatever must see the training data before the model trains (default: nothing)."""

    def cache(self, dataset) -> dict[str, np.ndarray]:
        """Per-frame arrays to add to ``dataset.frames`` (default: none)."""
        return {}

    def after_step(self, encoder: nn.Module) -> None:
        """Called after every optimizer step (an EMA teacher updates here)."""


def disk_cached(dataset, name: str, parts: list[bytes], compute) -> np.ndarray:
    """``compute()``, stored under ``<dataset>/cache/<name>-<hash of parts>.npy`` and read from there next time.

    The hash covers whatever determines the result (autoencoder weights, the frames), so a stale file is never
    read; a dataset directory that cannot be written to just goes uncached.
    """
    import hashlib
    import io

    from wam.io import atomic_write_bytes

    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    path = Path(dataset.root) / "cache" / f"{name}-{digest.hexdigest()[:16]}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass  # torn or foreign file: recompute and overwrite
    array = compute()
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    try:
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    except OSError:
        pass
    return array


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, F, C, H, W]`` -> ``[B, F * (H/p) * (W/p), C * p * p]``."""
    b, f, c, h, w = x.shape
    x = x.reshape(b, f, c, h // patch, patch, w // patch, patch).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, f * (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, frames: int, channels: int, size: int, patch: int) -> torch.Tensor:
    """Inverse of ``patchify`` for square frames of side ``size``."""
    b, n = tokens.shape[0], size // patch
    x = tokens.reshape(b, frames, n, n, channels, patch, patch).permute(0, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, frames, channels, size, size)
