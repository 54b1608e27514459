"""Feature substrate, encoder-only: the future is the model's own observation encoding of future frames.

The targets are taken under stop-gradient and layer-normalized (so the diffusion backbone sees unit-scale tokens
and the encoder cannot shrink the loss by shrinking its outputs). They exist only at training time: the
substrate has no decoder, and a deployment may skip generating them altogether (Fast-WAM's observation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wam.nn.context import ContextEncoder


class EncoderOnlyFeatures:
    """Future tokens ``[B, n_future * n_keys, d]``: encoder features of the frames at ``t + k``."""

    has_decoder = False

    def __init__(self, n_future: int, n_keys: int, dim: int):
        self.shape = (n_future * n_keys, dim)

    def targets(self, encoder: ContextEncoder, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            tokens = encoder.encode_frames(batch, prefix="future.").flatten(1, 2)
        return F.layer_norm(tokens, tokens.shape[-1:])
