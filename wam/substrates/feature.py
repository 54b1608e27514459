"""Feature substrates: futures with no fixed decoder, as encoder features or as codebook tokens.

- ``encoder-only``: the model's own observation encoder applied to the future frames, under stop-gradient and
  layer-normalized (unit-scale tokens; the encoder cannot shrink the loss by shrinking its outputs). A training
  target only: a deployment may skip generating it (Fast-WAM);
- ``tap``: the same targets, but the backbone predicts them in one pass from learned queries and the action reads
  those trunk activations, never a sampled future (VPP);
- ``teacher``: targets from an EMA copy of the encoder, JEPA-style (FLARE, V-JEPA 2-AC);
- ``token``: discrete codes of a VQ codebook fitted on the dataset (the vocabulary an LLM/VLM backbone predicts);
  continuous backbones see the code vectors, autoregressive ones the ids.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from wam.anatomy import Substrate
from wam.backbones.base import Stream
from wam.substrates.base import STANDARD_RANGE, FutureSubstrate, SubstrateInputs, SubstrateSizing, patchify
from wam.substrates.pixel import LatentFrames


class EncoderFeatures(FutureSubstrate):
    """Future tokens ``[B, n_future * tokens_per_frame, d]``: encoder features of the frames at ``t + k``."""

    kind = Substrate.FEATURE_ENCODER_ONLY
    reads_observations = True

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> EncoderFeatures:
        return cls(sizing.n_future, sizing.encoder.tokens_per_frame, sizing.d_model)

    def __init__(self, n_future: int, tokens_per_frame: int, dim: int):
        super().__init__()
        self.n_future = n_future
        self.stream = Stream(n_future * tokens_per_frame, dim, clip=STANDARD_RANGE,
                             regress=self.kind is Substrate.FEATURE_TAP)

    def _encoder(self, inputs: SubstrateInputs) -> nn.Module:
        return inputs.encoder

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        with torch.no_grad():
            tokens = self._encoder(inputs).encode_frames(inputs.observations, prefix="future.").flatten(1, 2)
        return F.layer_norm(tokens, tokens.shape[-1:])


class TapFeatures(EncoderFeatures):
    kind = Substrate.FEATURE_TAP


class TeacherFeatures(EncoderFeatures):
    """Targets from an exponential moving average of the observation encoder (a JEPA target encoder)."""

    kind = Substrate.FEATURE_TEACHER

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> TeacherFeatures:
        return cls(sizing.n_future, sizing.encoder.tokens_per_frame, sizing.d_model, sizing.encoder)

    def __init__(self, n_future: int, tokens_per_frame: int, dim: int, encoder: nn.Module, decay: float = 0.99):
        super().__init__(n_future, tokens_per_frame, dim)
        self.teacher = copy.deepcopy(encoder).requires_grad_(False)
        self.decay = decay

    def _encoder(self, inputs: SubstrateInputs) -> nn.Module:
        return self.teacher

    @torch.no_grad()
    def after_step(self, encoder: nn.Module) -> None:
        for t, s in zip(self.teacher.parameters(), encoder.parameters()):
            t.lerp_(s, 1 - self.decay)


class TokenCodes(LatentFrames):
    """Ids of a VQ codebook over a ``4 x 4`` grid per frame (16 tokens), fitted on the dataset and frozen."""

    kind = Substrate.FEATURE_TOKEN
    quantize = True

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> TokenCodes:
        return cls(sizing.n_future, sizing.image_key, sizing.image_size, sizing.discrete)

    def __init__(self, n_future: int, image_key: str, image_size: int, discrete: bool):
        self.discrete = discrete
        super().__init__(n_future, image_key, image_size)

    def _stream(self, length: int, dim: int) -> Stream:
        return Stream(length, dim, vocab=self.autoencoder.config.codebook_size if self.discrete else 0,
                      clip=STANDARD_RANGE)

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode_ids(x)  # cached as ids; vectors are looked up when needed

    def _vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids ``[B, n]`` -> code-vector tokens ``[B, n, c]``."""
        b = ids.shape[0]
        z = self.autoencoder.embed_ids(ids.reshape(-1, self.grid ** 2))[:, None]  # [B*F, 1, c, g, g]
        return patchify(z, 1).reshape(b, -1, self.stream.dim)

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        ids = inputs.batch[f"future.{self.cache_key}"].flatten(1).long()
        ids = ids.to(inputs.observations[self.image_key].device)
        return ids if self.discrete else self._vectors(ids)

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.discrete:  # snap generated vectors to their nearest codes, then decode
            b = tokens.shape[0]
            book = F.normalize(self.autoencoder.codebook, dim=-1) * self.autoencoder.scale
            tokens = torch.cdist(tokens.reshape(-1, tokens.shape[-1]), book).argmin(-1).reshape(b, -1)
        b = tokens.shape[0]
        n = self.frames_in(tokens)
        frames = self.autoencoder.decode(self.autoencoder.embed_ids(tokens.reshape(b * n, -1)))
        return {"frames": frames.reshape(b, n, *frames.shape[1:])}
