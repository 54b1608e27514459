"""Model presets: a census system's 4-tuple plus the sizes we train it at on one CPU.

Each preset is a function of nothing that returns the ``ModelConfig`` fields it sets; input shapes and the
instruction vocabulary come from the dataset at training time.
"""

from __future__ import annotations

from typing import Any

from wam.anatomy import WAMSpec

PRESETS: dict[str, dict[str, Any]] = {
    # The baseline: a diffusion action-chunk policy with no future prediction (Diffusion Policy's pattern).
    "vla": dict(spec=WAMSpec(substrate="none", coupling="none", backbone="diffusion", deployment="chunked"),
                future_offsets=()),
    # Fast-WAM (feature encoder-only, diffusion, post-prediction head, chunked): the future branch shapes the
    # shared trunk in training and is skipped at inference. Scaled down from a video-diffusion trunk to a
    # 4-layer transformer over one token per frame. lambda = 0.1: at 1 the future loss crowds out the action
    # (results/foundation/ablations).
    "fast-wam": dict(spec=WAMSpec(substrate="feature-encoder-only", coupling="post-head", backbone="diffusion",
                                  deployment="chunked"),
                     future_offsets=(8, 16), future_weight=0.1, future_dropout=0.5, future_at_inference="skip"),
}


def preset(name: str) -> dict[str, Any]:
    """The ``ModelConfig`` fields of preset ``name``; raises ``ValueError`` listing the presets if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
