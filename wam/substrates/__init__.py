"""Substrates: what future a model predicts, as token streams (see ``wam.substrates.base``)."""

from __future__ import annotations

from torch import nn

from wam.anatomy import Backbone, SpecError, Substrate, WAMSpec
from wam.substrates.base import FutureSubstrate, SubstrateInputs
from wam.substrates.feature import EncoderFeatures, TapFeatures, TeacherFeatures, TokenCodes
from wam.substrates.geometric import AffordanceMaps, KeypointTracks
from wam.substrates.pixel import DecodedFrames, LatentFrames

__all__ = ["FutureSubstrate", "SubstrateInputs", "build_substrates"]

_NEEDS_IMAGE = {Substrate.PIXEL_DECODED, Substrate.PIXEL_LATENT, Substrate.FEATURE_TOKEN}


def build_substrates(spec: WAMSpec, config, encoder: nn.Module) -> nn.ModuleDict:
    """One module per substrate component of ``spec``, keyed by kind (empty for a VLA)."""
    images = [k for k, s in sorted(config.observation_shapes.items()) if len(s) == 3]
    image_key = images[0] if images else None
    size = config.observation_shapes[image_key][0] if image_key else 64
    n_future = len(config.future_offsets)
    discrete = spec.backbone in (Backbone.AUTOREGRESSIVE, Backbone.VLM)
    out = nn.ModuleDict()
    for kind in spec.substrates:
        if kind in _NEEDS_IMAGE and image_key is None:
            raise SpecError(f"substrate {kind.value!r} predicts images but the model observes none; collect the "
                            "dataset with --track vision, or pick a feature, geometric or affordance substrate")
        if kind is Substrate.PIXEL_DECODED:
            module: FutureSubstrate = DecodedFrames(n_future, image_key, size)
        elif kind is Substrate.PIXEL_LATENT:
            module = LatentFrames(n_future, image_key, size)
        elif kind is Substrate.FEATURE_TOKEN:
            module = TokenCodes(n_future, image_key, size, discrete)
        elif kind is Substrate.FEATURE_ENCODER_ONLY:
            module = EncoderFeatures(n_future, encoder.tokens_per_frame, config.d_model)
        elif kind is Substrate.FEATURE_TAP:
            module = TapFeatures(n_future, encoder.tokens_per_frame, config.d_model)
        elif kind is Substrate.FEATURE_TEACHER:
            module = TeacherFeatures(n_future, encoder.tokens_per_frame, config.d_model, encoder)
        elif kind is Substrate.GEOMETRIC:
            module = KeypointTracks(n_future, size)
        else:
            module = AffordanceMaps(n_future, size)
        out[kind.value.replace("-", "_")] = module
    return out
