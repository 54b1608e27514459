"""Substrates: what future a model predicts, as token streams (see ``wam.substrates.base``).

Each implementation registers under its anatomy value in ``SUBSTRATES``; a value without one is refused when a
model is built, never replaced by another substrate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from wam.anatomy import SpecError, Substrate, WAMSpec
from wam.substrates.base import FutureSubstrate, SubstrateInputs, SubstrateSizing
from wam.substrates.feature import EncoderFeatures, TapFeatures, TeacherFeatures, TokenCodes
from wam.substrates.geometric import AffordanceMaps, KeypointTracks
from wam.substrates.pixel import DecodedFrames, LatentFrames

if TYPE_CHECKING:  # model.py builds its substrates here
    from wam.model import ModelConfig

__all__ = ["SUBSTRATES", "FutureSubstrate", "SubstrateInputs", "SubstrateSizing", "build_substrates"]

SUBSTRATES: dict[Substrate, type[FutureSubstrate]] = {
    Substrate.PIXEL_DECODED: DecodedFrames,
    Substrate.PIXEL_LATENT: LatentFrames,
    Substrate.FEATURE_ENCODER_ONLY: EncoderFeatures,
    Substrate.FEATURE_TAP: TapFeatures,
    Substrate.FEATURE_TEACHER: TeacherFeatures,
    Substrate.FEATURE_TOKEN: TokenCodes,
    Substrate.GEOMETRIC: KeypointTracks,
    Substrate.AFFORDANCE: AffordanceMaps,
}
"""Anatomy value -> implementation (``none``, the VLA, has no future and so no entry)."""


def build_substrates(spec: WAMSpec, config: ModelConfig, encoder: nn.Module) -> nn.ModuleDict:
    """One module per substrate component of ``spec``, keyed by kind (empty for a VLA)."""
    image_key = config.image_keys[0] if config.image_keys else None
    sizing = SubstrateSizing(n_future=len(config.future_offsets), image_key=image_key,
                             image_size=config.observation_shapes[image_key][0] if image_key else 64,
                             discrete=spec.capabilities.discrete_tokens, d_model=config.d_model, encoder=encoder)
    out = nn.ModuleDict()
    for kind in spec.substrates:
        if kind not in SUBSTRATES:
            raise SpecError(f"substrate {kind.value!r} has no registered implementation (registered: "
                            f"{', '.join(k.value for k in SUBSTRATES)})")
        cls = SUBSTRATES[kind]
        if cls.needs_image and image_key is None:
            raise SpecError(f"substrate {kind.value!r} predicts images but the model observes none; collect the "
                            "dataset with --track vision, or pick a feature, geometric or affordance substrate")
        out[kind.value.replace("-", "_")] = cls.build(sizing)
    return out
