"""Model presets: the seed systems of the survey as configs, at the sizes we train on one CPU.

A preset is a census system's 4-tuple (read from the census, so the two cannot drift apart) plus the
``ModelConfig`` fields that carry the mechanism worth keeping, and one line on what is kept and what is scaled
down. Input shapes and the instruction vocabulary come from the dataset at training time. Every original is a
0.1-14B-parameter model trained on GPUs; ours share one small trunk (4 layers, width 128, a 64x64 CNN), so the
presets compare *designs* on equal footing, not the published systems.

``docs/presets.md`` is generated from this table (``python -m wam.presets.models``; a test keeps it in sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wam.anatomy import WAMSpec
from wam.couplings.planners import PlannerConfig


@dataclass(frozen=True)
class Preset:
    """One reproducible design: its census method (None for our baselines), spec, fields and a one-line note."""

    name: str
    census: str | None
    note: str
    fields: dict[str, Any] = field(default_factory=dict)
    spec: WAMSpec | None = None
    """Only for presets outside the census; census presets take the census row's 4-tuple."""
    philosophy: str = ""
    """Only for presets outside the census (census presets take the row's)."""

    def resolved_spec(self) -> WAMSpec:
        if self.census is None:
            assert self.spec is not None, f"preset {self.name} has neither a census row nor a spec"
            return self.spec
        from wam.presets.census import census_spec, find_row

        return census_spec(find_row(self.census))

    def resolved_philosophy(self) -> str:
        if self.census is None:
            return self.philosophy
        from wam.presets.census import find_row

        return find_row(self.census).philosophy

    def config_fields(self) -> dict[str, Any]:
        """The ``ModelConfig`` fields this preset sets, its 4-tuple included."""
        return {"spec": self.resolved_spec(), **self.fields}


# Fields several presets share: a future the action may not see in half of the training samples, so it can be
# skipped at inference (Fast-WAM, GigaWorld-Policy, UVA), and a future the action always reads (UniPi, AIM, UWM).
SKIPPABLE_FUTURE = dict(future_weight=0.1, future_dropout=0.5, future_at_inference="skip")
READ_FUTURE = dict(future_weight=0.5, future_dropout=0.0, future_at_inference="predict")

_PRESETS = [
    Preset("vla", None, "Baseline: a diffusion action-chunk policy with no future prediction (Diffusion Policy's "
           "pattern), same trunk as every preset.",
           dict(future_offsets=()), spec=WAMSpec(substrate="none", coupling="none", backbone="diffusion",
                                                 deployment="chunked"), philosophy="Policy (no world model)"),
    Preset("world-model-mpc", None, "Baseline: a world model that only scores actions. A hybrid trunk predicts "
           "autoencoder latents given an action chunk; CEM over uniform random chunks (no policy prior) keeps the "
           "chunk whose predicted future a learned progress head rates best (PlaNet/TD-MPC's planning without "
           "their policy).",
           dict(future_offsets=(4, 8, 12, 16),
                planner=PlannerConfig(planner="cem", proposal="uniform", objective="progress", candidates=64,
                                      iterations=3, elites=8)),
           spec=WAMSpec(substrate="pixel-latent", coupling="rollout", backbone="hybrid", deployment="chunked"),
           philosophy="Model-based planning"),
    Preset("unipi", "UniPi", "Kept: generate the future frames (16x16-pixel patches, decoded), then a separate "
           "inverse-dynamics head reads them; the whole plan runs open-loop. Scaled down: a 4-layer transformer "
           "denoiser over 2 future frames (t+8, t+16) instead of a video U-Net over a full clip; no "
           "super-resolution. Changed: it predicts the clean frames, not the noise, because a 128-wide trunk cannot "
           "carry a noise target as wide as a 768-value patch (with noise prediction: PSNR 6.9 dB, 31.8 % success).",
           dict(future_offsets=(8, 16), post_head="separate", parameterization="sample", **READ_FUTURE)),
    Preset("gr-1", "GR-1", "Kept: a causal transformer over a window of frames and proprioception emits the next "
           "action and the next frames' latents; video prediction is trained first (substrate-first schedule); "
           "single-step with a KV cache. Scaled down: 4 frames of 4 image tokens instead of 10 frames of "
           "perceiver-resampled MAE-ViT tokens, no video pretraining corpus. The action comes before the frames in "
           "the sequence, so the frames are a training objective and are not generated at deployment.",
           dict(n_obs=4, image_tokens=4, future_offsets=(1, 4), future_weight=0.5, future_at_inference="skip",
                substrate_first_steps=500)),
    Preset("fast-wam", "Fast-WAM", "Kept: future encoder features as a training objective of the shared diffusion "
           "trunk, skipped at inference. Scaled down: a 4-layer transformer over one token per frame instead of "
           "a 5B video-diffusion trunk. lambda = 0.1: at 1 the future loss crowds out the action "
           "(results/foundation/ablations).",
           dict(future_offsets=(8, 16), **SKIPPABLE_FUTURE)),
    Preset("flare", "FLARE", "Kept: learnable future queries in the policy trunk regress a frozen-momentum "
           "teacher's embedding of the future observation; the world model is a training loss only. Scaled "
           "down: the policy trunk is our 4-layer JEPA predictor, the teacher an EMA of our CNN instead of SigLIP.",
           dict(future_offsets=(8, 16), future_weight=0.5)),
    Preset("pointworld", "PointWorld", "Kept: predict the 3-D motion of scene keypoints given a candidate "
           "end-effector chunk; MPPI keeps the chunk whose predicted motion best reaches the task's goal. Scaled "
           "down: a handful of simulator keypoints instead of a full point cloud with DINO features; candidates "
           "come from a learned action prior instead of around a fixed nominal trajectory.",
           dict(future_offsets=(4, 8, 12, 16),
                planner=PlannerConfig(planner="mppi", proposal="prior", objective="goal", candidates=16))),
    Preset("aim", "AIM", "Kept: the future is a spatial intent map (goal, contact and progress heatmaps) "
           "generated jointly with the action, which always reads it. Scaled down: 16x16 maps from simulator "
           "geometry instead of a video model's value map; the action also sees the context (no strict "
           "bottleneck).",
           dict(future_offsets=(8, 16), **READ_FUTURE)),
    Preset("dreamzero", "DreamZero", "Kept: autoregressive generation of the future frames' latents and the "
           "action every step; closed loop replaces the predicted frames in the KV cache with the observed ones "
           "(sliding window). Scaled down: a regression transformer over 8 frames of 4 tokens instead of a 14B "
           "video-diffusion model over full frames.",
           dict(n_obs=8, image_tokens=4, future_offsets=(1, 2), future_weight=0.5, future_at_inference="predict")),
    Preset("gigaworld-policy", "GigaWorld-Policy", "Kept: action-centred joint diffusion of the action and "
           "future latents; the action can be denoised with the video masked out, so video generation is skipped "
           "at inference. Scaled down: a 4-layer denoiser instead of a 5B video model.",
           dict(future_offsets=(8, 16), **SKIPPABLE_FUTURE)),
    Preset("lda-1b", "LDA-1B", "Kept: a causal VLM-style trunk over instruction words and context predicts "
           "structured future features of a frozen-momentum encoder, an action head decodes. Scaled down: a "
           "4-layer trunk instead of Qwen3-VL-4B with DINOv3 targets; its latent actions come from our latent action "
           "model on video (wam train --video V --curriculum latent-actions), one embodiment instead of many.",
           dict(future_offsets=(8, 16), future_weight=0.5)),
    Preset("alam", "ALAM", "Kept: discrete future tokens (a VQ codebook over the frame) generated by a VLM-style "
           "trunk jointly with binned actions, and a flow-matching action expert. Scaled down: a 4-layer trunk "
           "instead of PaliGemma-2B; codes from our VQ autoencoder instead of a relational latent-action model, whose "
           "pretraining on video is the latent-action curriculum (wam train --video V --curriculum latent-actions).",
           dict(future_offsets=(8, 16), future_weight=0.5, future_at_inference="skip")),
    Preset("uwm", "UWM", "Kept: one trunk denoises action and future latents with an independent noise level per "
           "stream (so the same weights are a policy, forward, inverse or video model); both are generated at "
           "inference. Scaled down: light flow heads on a 4-layer trunk instead of a single large DiT.",
           dict(future_offsets=(8, 16), parameterization="flow", **READ_FUTURE)),
    Preset("uva", "UVA", "Kept: a shared trunk with separate light diffusion heads for video latents and action; "
           "the video head is bypassed at inference. Scaled down: a 4-layer trunk, flow heads, 64x64 frames.",
           dict(future_offsets=(8, 16), parameterization="flow", **SKIPPABLE_FUTURE)),
    Preset("vpp", "VPP", "Kept: the action head reads the internal features a video predictor computes in one "
           "forward pass (a feature tap), no denoising loop over the video; one call per step. Scaled down: our "
           "4-layer trunk instead of Stable Video Diffusion.",
           dict(future_offsets=(8, 16), future_weight=0.5)),
    Preset("vjepa2-ac", None, "Kept: an action-conditioned predictor in a frozen-momentum encoder's feature space "
           "(V-JEPA 2-AC, DINO-WM); CEM searches action chunks toward the goal embedding (fitted per task from "
           "the final frames of the demonstrations). Scaled down: our CNN features instead of a ViT-g; CEM "
           "starts from a learned action prior instead of a zero-mean Gaussian.",
           dict(future_offsets=(4, 8, 12, 16),
                planner=PlannerConfig(planner="cem", proposal="prior", objective="goal", candidates=16,
                                      iterations=2)),
           spec=WAMSpec(substrate="feature-teacher", coupling="rollout", backbone="jepa", deployment="chunked"),
           philosophy="Video-Generation-Free"),
]
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESETS}


def preset(name: str) -> dict[str, Any]:
    """The ``ModelConfig`` fields of preset ``name``; raises ``ValueError`` listing the presets if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from: {', '.join(PRESETS)}")
    return PRESETS[name].config_fields()


def presets_markdown() -> str:
    """``docs/presets.md``: every preset with its 4-tuple and what of the original is kept and scaled down."""
    lines = ["# Presets", "", "`wam train --preset NAME` trains one; `wam bench --presets ...` trains and evaluates "
             "several side by side. Generated from `wam/presets/models.py` (`python -m wam.presets.models`).", "",
             "| preset | census method | philosophy | substrate | backbone | coupling | deployment | kept / scaled down |",
             "|---|---|---|---|---|---|---|---|"]
    for p in _PRESETS:
        s = p.resolved_spec().to_dict()
        lines.append(f"| `{p.name}` | {p.census or '–'} | {p.resolved_philosophy()} | {s['substrate']} | "
                     f"{s['backbone']} | {s['coupling']} | {s['deployment']} | {p.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(presets_markdown(), end="")
