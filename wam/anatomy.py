"""The anatomy of a World Action Model: the 4-tuple (substrate, coupling, backbone, deployment) as typed specs.

A WAM models ``p(s_{t+1:t+H}, a_{t:t+H-1} | c)`` with ``s`` in a chosen substrate space. The four axes say what
future exists (substrate), how the action binds to it (coupling), how the prediction is made (backbone) and when
the model runs (deployment). ``WAMSpec.validate`` holds the rules between axes, so an impossible model fails at
configuration time with a message that names the conflict and a valid alternative.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SpecError(ValueError):
    """An impossible or unsupported 4-tuple; the message names the conflict and a valid alternative."""


class Substrate(str, Enum):
    """What future the model predicts. ``none`` is the VLA boundary case: no future at all."""

    NONE = "none"
    PIXEL_DECODED = "pixel-decoded"
    PIXEL_LATENT = "pixel-latent"
    FEATURE_ENCODER_ONLY = "feature-encoder-only"
    FEATURE_TAP = "feature-tap"
    FEATURE_TEACHER = "feature-teacher"
    FEATURE_TOKEN = "feature-token"
    GEOMETRIC = "geometric"
    AFFORDANCE = "affordance"

    @property
    def decodes_to_pixels(self) -> bool:
        return self in (Substrate.PIXEL_DECODED, Substrate.PIXEL_LATENT)


class Coupling(str, Enum):
    """How the action binds to the predicted future."""

    NONE = "none"  # VLA: the action never sees a prediction
    ROLLOUT = "rollout"  # q(a|c) p(s|c,a): candidates are rolled out and scored
    JOINT = "joint"  # p(s, a | c), trained with L_gen + lambda L_act
    POST_HEAD = "post-head"  # p(s|c) q(a|s,c): an inverse-dynamics head reads the future


class Backbone(str, Enum):
    """How the prediction is made."""

    DIFFUSION = "diffusion"
    AUTOREGRESSIVE = "autoregressive"
    JEPA = "jepa"
    HYBRID = "hybrid"
    VLM = "vlm"


class Deployment(str, Enum):
    """When the model runs, with its cost model (see ``wam.eval.budget``)."""

    OPEN_LOOP = "open-loop"  # one call for the whole task
    CHUNKED = "chunked"  # one call every K steps
    SINGLE_STEP = "single-step"  # one call per step
    INTERACTIVE = "interactive"  # the model is stepped like an environment


@dataclass(frozen=True)
class BackboneCapabilities:
    """What a backbone family can do, declared once so that no code asks a backbone for its type."""

    substrates: frozenset[Substrate]
    """Substrates it can predict."""
    discrete_tokens: bool
    """Image-like substrates reach it as code ids (a sequence model over a vocabulary), not as vectors."""
    sampler_steps: bool
    """It generates by iterative denoising: the sampler's step count is an inference knob, and a future can be
    given only some of the steps (``--future truncate``)."""
    time_positions: bool
    """Context frames carry positions in time, so a deployment can stream them through a KV cache."""
    instruction_words: bool
    """It reads the instruction word by word in the same sequence as the substrate and action tokens."""
    serial: bool
    """It generates the streams one after another in the coupling's order, so a stream is conditioned only on the
    streams before it: a joint model that serializes the action first has no inverse dynamics ``p(a | c, s)``."""


# JEPA regresses embeddings and has no decoder by construction, so it cannot produce pixels, codes, keypoints or
# maps; every other family generates any substrate as token streams.
_EMBEDDING_SUBSTRATES = frozenset({Substrate.FEATURE_TEACHER, Substrate.FEATURE_ENCODER_ONLY, Substrate.FEATURE_TAP})
BACKBONE_CAPABILITIES: dict[Backbone, BackboneCapabilities] = {
    Backbone.DIFFUSION: BackboneCapabilities(frozenset(Substrate), discrete_tokens=False, sampler_steps=True,
                                             time_positions=False, instruction_words=False, serial=False),
    Backbone.AUTOREGRESSIVE: BackboneCapabilities(frozenset(Substrate), discrete_tokens=True, sampler_steps=False,
                                                  time_positions=True, instruction_words=False, serial=True),
    Backbone.HYBRID: BackboneCapabilities(frozenset(Substrate), discrete_tokens=False, sampler_steps=True,
                                          time_positions=False, instruction_words=False, serial=False),
    Backbone.VLM: BackboneCapabilities(frozenset(Substrate), discrete_tokens=True, sampler_steps=False,
                                       time_positions=False, instruction_words=True, serial=True),
    Backbone.JEPA: BackboneCapabilities(_EMBEDDING_SUBSTRATES, discrete_tokens=False, sampler_steps=False,
                                        time_positions=False, instruction_words=False, serial=False),
}

CONJUNCTION = "+"


def parse_substrate(value: str | Substrate | tuple | list) -> tuple[Substrate, ...]:
    """``"pixel-decoded+geometric"`` -> its components in canonical (enum) order; ``"none"`` -> ``()``."""
    parts = value if isinstance(value, (tuple, list)) else str(getattr(value, "value", value)).split(CONJUNCTION)
    components = []
    for part in parts:
        try:
            components.append(Substrate(getattr(part, "value", str(part).strip())))
        except ValueError:
            choices = ", ".join(e.value for e in Substrate)
            raise SpecError(f"unknown substrate {str(part).strip()!r}; choose from: {choices} (join several with "
                            f"'{CONJUNCTION}', e.g. pixel-decoded+geometric)") from None
    if len(set(components)) != len(components):
        raise SpecError(f"substrate {value!r} repeats a component; list each once")
    if Substrate.NONE in components:
        if len(components) > 1:
            raise SpecError("substrate 'none' cannot be part of a conjunction; drop it or use 'none' alone")
        return ()
    order = list(Substrate)
    return tuple(sorted(components, key=order.index))


@dataclass(frozen=True)
class WAMSpec:
    """The 4-tuple of a model. Strings are accepted and converted, so configs stay plain JSON.

    ``substrate`` is one ``Substrate`` value or a conjunction of several joined by ``+`` (``pixel-decoded+geometric``);
    it is stored in canonical form, and ``substrates`` lists the components (empty for a VLA).
    """

    substrate: str = Substrate.FEATURE_ENCODER_ONLY.value
    coupling: Coupling = Coupling.POST_HEAD
    backbone: Backbone = Backbone.DIFFUSION
    deployment: Deployment = Deployment.CHUNKED

    def __post_init__(self) -> None:
        components = parse_substrate(self.substrate)
        object.__setattr__(self, "substrate", CONJUNCTION.join(c.value for c in components) or Substrate.NONE.value)
        for name, enum in (("coupling", Coupling), ("backbone", Backbone), ("deployment", Deployment)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise SpecError(f"unknown {name} {value!r}; choose from: {choices}") from None
        self.validate()

    @property
    def substrates(self) -> tuple[Substrate, ...]:
        """The substrate components, in canonical order; ``()`` for a VLA."""
        return parse_substrate(self.substrate)

    @property
    def capabilities(self) -> BackboneCapabilities:
        """What this model's backbone family can do."""
        return BACKBONE_CAPABILITIES[self.backbone]

    @property
    def is_wam(self) -> bool:
        """A model is a WAM only when a predicted future lies on the action path."""
        return bool(self.substrates)

    def validate(self) -> None:
        """Raise ``SpecError`` for combinations the anatomy forbids."""
        components = self.substrates
        if (not components) != (self.coupling is Coupling.NONE):
            if not components:
                raise SpecError(f"coupling {self.coupling.value!r} needs a predicted future, but substrate is "
                                "'none'; pick a substrate such as 'feature-encoder-only', or coupling 'none' (a VLA)")
            raise SpecError(f"substrate {self.substrate!r} predicts a future that coupling 'none' never uses; "
                            "pick coupling 'post-head', 'joint' or 'rollout', or substrate 'none' (a VLA)")
        for component in components:
            if component not in self.capabilities.substrates:
                raise SpecError(f"backbone {self.backbone.value!r} cannot generate substrate {component.value!r}: it "
                                "predicts in embedding space with no decoder; use substrate 'feature-teacher', or a "
                                "'diffusion' or 'autoregressive' backbone for pixels, codes, keypoints or maps")
        if components == (Substrate.FEATURE_ENCODER_ONLY,) and self.coupling is Coupling.ROLLOUT:
            raise SpecError("substrate 'feature-encoder-only' is a training-time target only and cannot score "
                            "rollouts; use substrate 'feature-teacher' for action-conditioned rollout")

    def to_dict(self) -> dict[str, str]:
        return {"substrate": self.substrate, "coupling": self.coupling.value,
                "backbone": self.backbone.value, "deployment": self.deployment.value}


def support_table() -> str:
    """The substrate x backbone table of the couplings each combination supports, as Markdown (in docs/anatomy.md).

    J = joint generation, P = post-prediction head, R = action-conditioned rollout; '-' = refused by the rules.
    """
    letters = {Coupling.JOINT: "J", Coupling.POST_HEAD: "P", Coupling.ROLLOUT: "R"}
    lines = ["| substrate | " + " | ".join(b.value for b in Backbone) + " |",
             "|---|" + "---|" * len(Backbone)]
    for substrate in Substrate:
        cells = []
        for backbone in Backbone:
            ok = []
            for coupling in ((Coupling.NONE,) if substrate is Substrate.NONE else letters):
                try:
                    WAMSpec(substrate=substrate.value, coupling=coupling, backbone=backbone)
                    ok.append(letters.get(coupling, "VLA"))
                except SpecError:
                    pass
            cells.append(" ".join(ok) or "-")
        lines.append(f"| {substrate.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
