"""``WorldActionModel``: a substrate, a backbone and a coupling composed behind one contract.

Contract (LeRobot-style, extended for WAMs):

- ``loss(batch, step) -> (loss, info)``: the coupling's objective, e.g. ``lambda_gen L_gen + lambda_act L_act``;
- ``act(observation) -> action chunk [B, H, d_a]`` in environment units;
- ``predict(observation, actions=None) -> {stream: future tokens}`` in the substrate space (``p(s | c)``, or
  ``p(s | c, a)`` for couplings that model it); ``decode(futures)`` turns them into frames, keypoints or maps;
- ``score(observation, candidates) -> [B, N]``: how likely the model finds each candidate action chunk;
- ``save(dir)`` / ``WorldActionModel.load(dir)``: ``config.json`` + ``model.safetensors``, no pickle.

Batches are dictionaries of raw tensors as produced by ``wam.data.windows`` (or by the deployment wrapper):
observation history per key ``[B, n_obs, ...]``, ``future.<key>`` for training, ``action`` ``[B, H, d_a]`` and
``task`` (instruction strings). Normalization happens here, with statistics saved in the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from wam.anatomy import Coupling, SpecError, WAMSpec
from wam.backbones import CachedContext, build_backbone
from wam.backbones.base import Stream
from wam.couplings import ACTION, Call, build_coupling
from wam.couplings.base import FutureMode
from wam.couplings.planners import PlannerConfig
from wam.data.latent_actions import LATENT_ACTION
from wam.data.normalize import Normalizer
from wam.data.windows import WindowDataset
from wam.envs import DEFAULT_SUITE, SUITES
from wam.io import atomic_path, atomic_write_json, from_json_dict, safetensors_writes
from wam.nn.context import ContextEncoder
from wam.nn.layers import colour_jitter, random_shift
from wam.substrates import SubstrateInputs, build_substrates

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"
SIZE_LIMITS = {"action_dim": 256, "n_obs": 64, "horizon": 256, "d_model": 4096, "n_layers": 64, "n_heads": 64,
               "image_tokens": 256, "train_timesteps": 10_000, "inference_steps": 1000, "truncate_steps": 1000,
               "future_offsets": 1024, "image_channels": 4096}
"""Upper bounds on sizes, far above this project's models, so a damaged config fails cleanly instead of allocating."""
INSTRUCTION_WORDS = 8  # MetaWorld instructions have 2-4 words


class CheckpointError(RuntimeError):
    """A run directory whose checkpoint is missing, truncated or does not match its config."""


@dataclass(frozen=True)
class InferenceConfig:
    """The run-time knobs of a model call: they change how a trained model acts, never its weights or its config.

    ``WorldActionModel.inference(...)`` gives the model's own (from its ``ModelConfig``) with overrides, checked
    against what the model can do; policies and evaluations carry one and pass it to every call.
    """

    inference_steps: int
    """Sampler steps per call."""
    future: FutureMode
    """Joint and post-head couplings: skip the future stream, generate it first, or give it ``truncate_steps``."""
    future_horizon: int | None
    """Generate only the first this many future offsets (None: all)."""
    planner: PlannerConfig
    """Rollout coupling: its search."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: its 4-tuple, input shapes, sizes and inference knobs."""

    spec: WAMSpec = field(default_factory=WAMSpec)
    suite: str = DEFAULT_SUITE
    """The suite of the training data (``wam.envs``): where the model is evaluated and what its tasks mean."""
    observation_shapes: dict[str, list[int]] = field(default_factory=dict)
    action_dim: int = 4
    vocabulary: list[str] = field(default_factory=list)
    n_obs: int = 2
    """Observation history length."""
    horizon: int = 16
    """Action chunk length H."""
    n_action_steps: int = 8
    """Actions executed per model call (K) under chunked deployment."""
    future_offsets: tuple[int, ...] = (8, 16)
    """Future frames t+k predicted by the substrate (empty for a VLA)."""
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    image_channels: tuple[int, ...] = (16, 32, 64, 128)
    image_tokens: int = 1
    """Context tokens per image: 1 (the pooled feature vector) or a square number (a grid over the last feature
    map, as ViT-style encoders give; GR-1 keeps about ten per frame)."""
    image_keypoints: int = 0
    """0, or K: each image's one token read from K spatial-softmax keypoints of the last feature map (the expected
    (x, y) of each of K maps) instead of the flattened map; needs image_tokens 1."""
    dropout: float = 0.1
    train_timesteps: int = 100
    inference_steps: int = 10
    """DDIM steps per call: the sampler's fidelity-latency knob."""
    future_weight: float = 0.1
    """lambda_gen in L = lambda_gen L_gen + L_act. At 1 the future loss crowded out the action on MetaWorld
    (fast-wam 70% vs 97.5% success at 0.1; results/foundation/ablations)."""
    future_dropout: float = 0.5
    """Fraction of training samples in which the action cannot see the future (so skipping it is in-distribution)."""
    future_at_inference: Literal["skip", "predict", "truncate"] = "skip"
    """Joint and post-head couplings: skip the future, generate it fully, or give it only ``truncate_steps``."""
    truncate_steps: int = 2
    future_horizon: int | None = None
    """Prediction horizon at inference: generate only the first this many future offsets (None: all of them)."""
    substrate_first_steps: int = 0
    """Joint coupling: train the substrate alone for this many steps, then ramp the action loss in as long."""
    parameterization: Literal["epsilon", "sample", "flow"] = "epsilon"
    """Denoising backbones: noise or clean-sample prediction (DDPM/DDIM), or flow matching (Euler). Clean-sample
    prediction suits tokens wider than the trunk, such as raw pixel patches (see wam.backbones.noise)."""
    tasks: list[str] = field(default_factory=list)
    """Instructions of the training tasks, in dataset order (goal objectives are per task)."""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """Rollout coupling: proposal, planner and objective."""
    post_head: Literal["shared", "separate"] = "shared"
    """Post-head coupling: the action is a stream of the shared backbone (Fast-WAM), or comes from a separate
    inverse-dynamics head reading the predicted future (UniPi; lets the predictor be frozen)."""
    substrate_fit_steps: int = 800
    """Autoencoder training steps for the pixel-latent and feature-token substrates."""
    augment_pad: int = 0
    """Random-shift augmentation in pixels (0 disables). Off by default: with MetaWorld's fixed camera the absolute
    image position of an object is what locates it, and shifting the image blurs exactly that (measured: 42% vs
    92% success on drawer-open/button-press-topdown, see the README)."""
    augment_colour: float = 0.0
    """Colour-jitter augmentation strength in training (0 disables): brightness, contrast and saturation scaled by
    U(1 - s, 1 + s) per sample (``wam.nn.layers.colour_jitter``). A lever against the lighting and colour factors
    of variation (docs/generalization.md)."""

    @property
    def image_keys(self) -> list[str]:
        """The observed camera images, by name; the first is the one pixel and feature substrates predict."""
        return sorted(k for k, shape in self.observation_shapes.items() if len(shape) == 3)

    @property
    def denoises(self) -> bool:
        """Whether something of the model is sampled in steps from noise (a diffusion or hybrid backbone, or
        post-head's separate inverse-dynamics head, which ``__post_init__`` allows only with its coupling), so that
        the parameterization and the sampler steps mean anything."""
        return self.spec.capabilities.sampler_steps or self.post_head == "separate"

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = WAMSpec(**self.spec)
        if isinstance(self.planner, dict):
            self.planner = PlannerConfig(**self.planner)
        if self.suite not in SUITES:
            raise SpecError(f"suite {self.suite!r} is not registered ({', '.join(SUITES)})")
        self.future_offsets = tuple(self.future_offsets)
        self.image_channels = tuple(self.image_channels)
        for key, shape in self.observation_shapes.items():
            if not shape or not all(1 <= d <= 4096 for d in shape):
                raise SpecError(f"observation_shapes[{key!r}]={shape}: each size must lie in [1, 4096]")
        for name, limit in SIZE_LIMITS.items():
            value = getattr(self, name)
            for v in value if isinstance(value, tuple) else (value,):
                if not 1 <= v <= limit:
                    raise SpecError(f"{name}={value} is out of range: each must lie in [1, {limit}]")
        if not 0 <= self.image_keypoints <= SIZE_LIMITS["image_tokens"]:
            raise SpecError(f"image_keypoints={self.image_keypoints} is out of range: it must lie in "
                            f"[0, {SIZE_LIMITS['image_tokens']}]")
        if self.image_keypoints and self.image_tokens != 1:
            raise SpecError(f"image_keypoints={self.image_keypoints} reads one token per image; it needs "
                            f"image_tokens=1, not {self.image_tokens}")
        for name in ("dropout", "future_dropout", "future_weight"):
            value = getattr(self, name)
            if not 0 <= value <= (1 if "dropout" in name else 1e3):  # also False for NaN
                raise SpecError(f"{name}={value} is out of range")
        future_loss_can_be_off = (self.spec.is_wam and self.spec.coupling in (Coupling.JOINT, Coupling.POST_HEAD)
                                  and self.future_at_inference == "skip" and not self.substrate_first_steps)
        if self.future_weight == 0 and not future_loss_can_be_off:
            raise SpecError("future_weight=0 leaves the future untrained, so only a model whose action does without "
                            "its future can take it: a joint or post-head coupling that skips the future at inference "
                            f"and trains no substrate first (here: substrate {self.spec.substrate!r}, coupling "
                            f"{self.spec.coupling.value!r}, future_at_inference={self.future_at_inference!r}, "
                            f"substrate_first_steps={self.substrate_first_steps})")
        if self.d_model % self.n_heads:
            raise SpecError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")
        if self.spec.is_wam and not self.future_offsets:
            raise SpecError(f"substrate {self.spec.substrate!r} needs future_offsets (which future frames to "
                            "predict), e.g. (8, 16)")
        if self.post_head == "separate" and self.spec.coupling is not Coupling.POST_HEAD:
            raise SpecError(f"post_head='separate' is an option of coupling 'post-head', not "
                            f"{self.spec.coupling.value!r}; drop it or use --coupling post-head")
        if self.parameterization != "epsilon" and not self.denoises:
            raise SpecError(f"parameterization={self.parameterization!r} would change nothing: backbone "
                            f"{self.spec.backbone.value!r} does not denoise with it (only diffusion and hybrid "
                            "backbones, and post-head's separate inverse-dynamics head, do)")
        if any(k < 1 for k in self.future_offsets) or list(self.future_offsets) != sorted(set(self.future_offsets)):
            raise SpecError(f"future_offsets {list(self.future_offsets)} must be positive and increasing, e.g. 8 16")
        if self.n_obs < 1:
            raise SpecError(f"n_obs={self.n_obs}: the model must see at least the current observation")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise SpecError(f"n_action_steps (K={self.n_action_steps}) must lie in [1, horizon={self.horizon}]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        d["planner"] = asdict(self.planner)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The config of ``to_dict`` output; wrong keys, types or sizes raise ``ValueError`` naming the field."""
        return from_json_dict(cls, d, "config")


class WorldActionModel(nn.Module):
    """A WAM (or, with substrate 'none', the VLA baseline) built from its ``ModelConfig``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        spec = config.spec
        modes = {k: ("image" if len(s) == 3 else "meanstd") for k, s in config.observation_shapes.items()}
        shapes = {**config.observation_shapes, "action": [config.action_dim]}
        self.normalizer = Normalizer(shapes, {**modes, "action": "minmax"})
        # A VLM reads the instruction word by word, in the same sequence as substrate and action tokens.
        words = INSTRUCTION_WORDS if spec.capabilities.instruction_words else 0
        self.encoder = ContextEncoder(config.observation_shapes, config.vocabulary, config.d_model, config.n_obs,
                                      config.image_channels, words, config.image_tokens,
                                      time_positions=spec.capabilities.time_positions,
                                      image_keypoints=config.image_keypoints)
        self.substrates = build_substrates(spec, config, self.encoder)
        streams = {ACTION: Stream(config.horizon, config.action_dim, clip=1.0),
                   **{s.name: s.stream for s in self.substrates.values()}}
        futures = tuple(s.name for s in self.substrates.values())
        self.coupling = build_coupling(spec.coupling, futures, streams, config, self.encoder.n_tokens)
        self.backbone = build_backbone(spec.backbone, config, self.encoder.n_tokens, streams, self.coupling.reads,
                                       self.coupling.order, self.encoder.tokens_per_frame)
        self._task_index = {t: i for i, t in enumerate(config.tasks)}
        self.default_inference = self.inference()

    def inference(self, inference_steps: int | None = None, future: FutureMode | None = None,
                  future_horizon: int | None = None, planner: PlannerConfig | None = None,
                  base: InferenceConfig | None = None) -> InferenceConfig:
        """``base`` (default: the model's own knobs) with the given ones changed; ``SpecError`` for a knob this
        model does not have: a future to generate or truncate, a horizon beyond its offsets, a search to change."""
        c = self.config
        base = base or InferenceConfig(c.inference_steps, c.future_at_inference, c.future_horizon, c.planner)
        knobs = InferenceConfig(inference_steps or base.inference_steps, future or base.future,
                                base.future_horizon if future_horizon is None else future_horizon,
                                planner or base.planner)
        if inference_steps is not None and not c.denoises:
            raise SpecError(f"backbone {c.spec.backbone.value!r} samples nothing in steps: --inference-steps applies "
                            "to diffusion and hybrid backbones and to post-head's separate inverse-dynamics head")
        if planner is not None and not self.coupling.plans:
            raise SpecError(f"coupling {c.spec.coupling.value!r} does not plan: --planner settings apply to the "
                            "'rollout' coupling, whose candidates are rolled out and scored")
        if future not in (None, "skip") and not self.coupling.has_future_stream:
            raise SpecError(f"coupling {c.spec.coupling.value!r} has no future stream to {future}; "
                            "--future applies to the 'joint' and 'post-head' couplings")
        if future == "truncate" and not c.spec.capabilities.sampler_steps:
            raise SpecError(f"backbone {c.spec.backbone.value!r} has no sampler steps to truncate; use "
                            "--future skip or predict")
        n = len(c.future_offsets)
        if knobs.future_horizon is not None and not (self.substrates and 1 <= knobs.future_horizon <= n):
            raise SpecError(f"future horizon {knobs.future_horizon} must lie in [1, {n}] (the model predicts the "
                            f"offsets {list(c.future_offsets)})" if self.substrates else
                            "this model has substrate 'none': it predicts no future to shorten")
        return knobs

    def _call(self, inference: InferenceConfig | None) -> Call:
        """The coupling's view of ``inference`` (default: the model's own knobs)."""
        knobs = inference or self.default_inference
        n, horizon = len(self.config.future_offsets), knobs.future_horizon
        lengths = {} if horizon is None else {s.name: s.stream.length * horizon // n for s in self.substrates.values()}
        future = knobs.future if self.coupling.has_future_stream else "skip"  # nothing else to do without one
        return Call(knobs.inference_steps, future, lengths, knobs.planner)

    @property
    def observation_keys(self) -> list[str]:
        return sorted(self.config.observation_shapes)

    @property
    def future_keys(self) -> list[str]:
        """Dataset features the substrates read at the future offsets."""
        keys = [k for s in self.substrates.values() for k in s.future_keys]
        if any(s.reads_observations for s in self.substrates.values()):
            keys += self.observation_keys
        keys += self.coupling.label_keys
        return list(dict.fromkeys(keys))

    @property
    def anchor_keys(self) -> list[str]:
        return list(dict.fromkeys(k for s in self.substrates.values() for k in s.anchor_keys))

    def add_caches(self, dataset) -> None:
        """Add the substrates' per-frame caches (autoencoder codes) to ``dataset.frames``, once per dataset."""
        for substrate in self.substrates.values():
            dataset.frames.update(substrate.cache(dataset))

    def windows(self, dataset, extra_future_keys: tuple[str, ...] = (), successful_only: bool = True,
                video: bool = False, latent_actions: bool = False,
                synthetic_share: float | None = None) -> WindowDataset:
        """Training windows over ``dataset`` with everything this model's loss reads (and ``extra_future_keys``),
        over the labelled, successful episodes only unless ``successful_only`` is False; with ``video``, windows
        without actions over every episode: for ``video_loss``, or with ``latent_actions`` for ``loss`` with each
        frame's latent action (``dataset.frames["latent_action"]``) in place of the real one; ``synthetic_share``:
        the fraction of every sampled batch drawn from dreamed episodes (``wam.data.synthetic``)."""
        offsets = self.config.future_offsets if self.substrates else ()
        keys = list(dict.fromkeys([*self.future_keys, *extra_future_keys]))
        if video:  # the objective heads' labels (progress, success) belong to the labelled loss
            keys = [k for k in keys if k not in self.coupling.label_keys]
        anchors = [*self.anchor_keys, *([LATENT_ACTION] if latent_actions else [])]
        return WindowDataset(dataset, self.observation_keys, self.config.n_obs, self.config.horizon, offsets,
                             keys, anchors, successful_only, video, synthetic_share)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def normalize_observations(self, batch: dict[str, Any], future: bool) -> dict[str, torch.Tensor]:
        """Normalize (and, in training, augment) the observation history and optional future frames."""
        device = self.device
        out = {}
        for key in self.observation_keys:
            frames = [batch[key]] + ([batch[f"future.{key}"]] if future else [])
            x = torch.cat(frames, dim=1).to(device)
            if x.ndim == 5 and self.training and self.config.augment_colour:
                x = colour_jitter(x, self.config.augment_colour)  # history and future frames change together
            x = self.normalizer.normalize(key, x)
            if x.ndim == 5 and self.training and self.config.augment_pad:
                x = random_shift(x, self.config.augment_pad)  # history and future frames move together
            n = batch[key].shape[1]
            out[key] = x[:, :n]
            if future:
                out[f"future.{key}"] = x[:, n:]
        return out

    def targets(self, batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Normalized observations and the future targets of every substrate stream for a batch of windows."""
        reads = any(s.reads_observations for s in self.substrates.values())
        obs = self.normalize_observations(batch, future=reads)
        inputs = SubstrateInputs(obs, batch, self.encoder)
        return obs, {s.name: s.targets(inputs) for s in self.substrates.values()}

    def forward(self, batch: dict[str, Any] | None, step: int | None = None,
                video: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss (so that ``DistributedDataParallel`` can wrap the model): ``loss`` of the labelled
        windows ``batch`` plus ``video_loss`` of the action-free windows ``video``; either may be None."""
        total, parts = self.loss(batch, step) if batch is not None else (0.0, {})
        if video is not None:
            video_total, video_parts = self.video_loss(video)
            total, parts = total + video_total, {**parts, **video_parts}
        return total, parts

    @property
    def learns_from_video(self) -> bool:
        """Whether action-free video can train this model directly: it predicts a future, and its coupling models
        that future without the action as an input (a forward model ``p(s | c, a)`` needs the actions)."""
        return bool(self.substrates) and self.coupling.learns_from_video

    def video_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of windows without actions (``WindowDataset(video=True)``): the future streams alone, weighted as
        in ``loss``; its parts are logged as ``loss/video/<stream>``."""
        if not self.learns_from_video:
            raise SpecError(f"a model with substrate {self.config.spec.substrate!r} and coupling "
                            f"{self.config.spec.coupling.value!r} cannot learn from action-free video")
        obs, futures = self.targets(batch)
        losses = self.coupling.video_loss(self.backbone, self.encoder(obs, batch["task"]), futures)
        return sum(losses.values()), {f"loss/video/{k}": v.detach() for k, v in losses.items()}

    def loss(self, batch: dict[str, Any], step: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of one batch, and its parts for logging (``step`` drives lambda schedules).

        The parts stay tensors on the model's device: reading them (``.item()``) waits for the device, so the
        training loop does it only on the steps it logs."""
        obs, futures = self.targets(batch)
        context = self.encoder(obs, batch["task"])
        if f"anchor.{LATENT_ACTION}" in batch:  # latent-action pretraining: the LAM's chunk, already in [-1, 1]
            action = batch[f"anchor.{LATENT_ACTION}"].to(self.device)
        else:
            action = self.normalizer.normalize("action", batch["action"].to(self.device))
        labels = None
        if "future.progress" in batch and "future.next.success" in batch:  # objective heads of a rollout coupling
            labels = {"progress": batch["future.progress"][:, -1].to(self.device),
                      "success": batch["future.next.success"][:, -1].reshape(-1).float().to(self.device)}
        losses = self.coupling.loss(self.backbone, context, action, futures, step, labels)
        total = sum(losses.values())
        return total, {f"loss/{k}": v.detach() for k, v in losses.items()}

    def freeze_predictor(self) -> None:
        """Train only the inverse-dynamics head: everything that predicts the future stops learning."""
        head = getattr(self.coupling, "head", None)
        if head is None:
            raise SpecError("freezing the predictor needs a separate action head: coupling 'post-head' with "
                            "post_head='separate' (wam train --post-head separate)")
        self.requires_grad_(False)
        head.requires_grad_(True)

    def after_step(self) -> None:
        """Hook for the training loop after every optimizer step (EMA teachers)."""
        for s in self.substrates.values():
            s.after_step(self.encoder)

    def reset(self) -> None:
        """Forget per-episode state (called by deployments at episode start)."""
        self.coupling.reset()

    def _context(self, observation: dict[str, Any]) -> torch.Tensor:
        return self.encoder(self.normalize_observations(observation, future=False), observation["task"])

    def task_index(self, instructions: list[str]) -> torch.Tensor:
        return torch.tensor([self._task_index.get(t, 0) for t in instructions], device=self.device)

    def _act(self, observation: dict[str, Any], generator: torch.Generator | None,
             context: torch.Tensor | CachedContext | None, call: Call):
        context = self._context(observation) if context is None else context
        action, futures = self.coupling.act(self.backbone, context, call, generator,
                                            self.task_index(observation["task"]))
        return context, action, futures

    @torch.no_grad()
    def act(self, observation: dict[str, Any], generator: torch.Generator | None = None,
            context: torch.Tensor | CachedContext | None = None,
            inference: InferenceConfig | None = None) -> torch.Tensor:
        """An action chunk ``[B, H, d_a]`` in environment units for an observation history batch, under the knobs
        of ``inference`` (default: the model's own).

        ``context`` replaces encoding ``observation`` (a streaming deployment's ``CachedContext``, whose caps can
        make the chunk shorter than H)."""
        return self.normalizer.unnormalize("action", self._act(observation, generator, context,
                                                               self._call(inference))[1])

    @torch.no_grad()
    def plan(self, observation: dict[str, Any], generator: torch.Generator | None = None,
             inference: InferenceConfig | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``act``, plus the futures (substrate space) the model expects along the chunk: those generated on the
        way (empty when the future is skipped), or for a rollout coupling the forward model's prediction of the
        chosen chunk."""
        call = self._call(inference)
        context, action, futures = self._act(observation, generator, None, call)
        if self.coupling.plans:
            futures = self.coupling.predict(self.backbone, context, call, action, generator)
        return self.normalizer.unnormalize("action", action), futures

    @torch.no_grad()
    def predict(self, observation: dict[str, Any], actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                inference: InferenceConfig | None = None) -> dict[str, torch.Tensor]:
        """The predicted future in substrate space, one ``[B, L, d]`` tensor (ids for discrete codes) per stream.

        ``actions`` (environment units) condition the prediction, ``p(s | c, a)``, for couplings that model it.
        """
        if not self.substrates:
            raise SpecError("this model has substrate 'none' (a VLA): it predicts no future")
        if actions is not None:
            actions = self.normalizer.normalize("action", actions.to(self.device))
        try:
            return self.coupling.predict(self.backbone, self._context(observation), self._call(inference), actions,
                                         generator)
        except ValueError as e:
            raise SpecError(str(e)) from None

    def inverse_refusal(self) -> str | None:
        """Why this model has no inverse dynamics ``p(a | c, s)`` (None when it has one)."""
        spec, order = self.config.spec, self.coupling.order
        if not self.substrates or not self.coupling.infers_actions:
            return (f"its coupling {spec.coupling.value!r} does not model the action given a future; a joint or "
                    "post-head coupling does")
        if spec.capabilities.serial and any(order.index(ACTION) < order.index(f) for f in self.coupling.futures):
            return (f"its {spec.backbone.value!r} backbone generates the action before the future, so the action "
                    "never reads it")
        if any(self.backbone.streams[f].regress for f in self.coupling.futures):
            return f"its substrate {spec.substrate!r} is read from the trunk, not given to it"
        return None

    def inverse_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of the inverse dynamics ``p(a | c, s)`` on labelled windows: each window's action chunk beside
        its clean future frames (``wam.deployment.adaptation`` trains the encoder on it at test time)."""
        why = self.inverse_refusal()
        if why is not None:
            raise SpecError(f"this model has no inverse dynamics: {why}")
        obs, futures = self.targets(batch)
        action = self.normalizer.normalize("action", batch["action"].to(self.device))
        losses = self.coupling.inverse_loss(self.backbone, self.encoder(obs, batch["task"]), action, futures)
        return sum(losses.values()), {f"loss/inverse/{k}": v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def inverse(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                inference: InferenceConfig | None = None) -> torch.Tensor:
        """Inverse dynamics ``p(a | c, s)``: the action chunk ``[B, H, d_a]`` (environment units) that leads from
        each window's history to its future frames (``batch`` as ``WindowDataset(video=True)`` builds it)."""
        why = self.inverse_refusal()
        if why is not None:
            raise SpecError(f"this model has no inverse dynamics: {why}")
        obs, futures = self.targets(batch)
        action = self.coupling.inverse(self.backbone, self.encoder(obs, batch["task"]), futures,
                                       self._call(inference), generator)
        return self.normalizer.unnormalize("action", action)

    @torch.no_grad()
    def observe(self, observation: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The substrate tokens of the newest frame of ``observation``, laid out like a prediction with that frame
        at every future offset: what a deployed robot sees of its substrate (raises for ground-truth substrates)."""
        now = {k: observation[k][:, -1:] for k in self.observation_keys}
        n = len(self.config.future_offsets)
        batch = {**now, **{f"future.{k}": v.expand(-1, n, *v.shape[2:]) for k, v in now.items()},
                 "task": observation["task"]}
        inputs = SubstrateInputs(self.normalize_observations(batch, future=True), batch, self.encoder)
        return {s.name: s.observe(inputs) for s in self.substrates.values()}

    def surprise(self, futures: dict[str, torch.Tensor], observation: dict[str, Any], offset_index: int) -> float:
        """How far the newest frame of ``observation`` is from the prediction ``futures`` made for it (the future
        at ``future_offsets[offset_index]``), in substrate space: ``||pred - obs||^2 / ||obs||^2`` over that
        offset's tokens, or the fraction of differing codes for discrete ones; the mean over streams."""
        values = []
        for name, observed in self.observe(observation).items():
            per_offset = observed.shape[1] // len(self.config.future_offsets)
            window = slice(offset_index * per_offset, (offset_index + 1) * per_offset)
            o, p = observed[:, window], futures[name][:, window].to(observed.dtype)
            if self.backbone.streams[name].vocab:
                values.append(float((o != p).float().mean()))
            else:
                values.append(float((p - o).pow(2).sum() / o.pow(2).sum().clamp_min(1e-8)))
        return sum(values) / len(values)

    def decode(self, futures: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """Decode predicted futures for inspection, for the substrates that have a decoder."""
        return {s.name: s.decode(futures[s.name]) for s in self.substrates.values()
                if s.has_decoder and s.name in futures}

    @torch.no_grad()
    def score(self, observation: dict[str, Any], candidates: torch.Tensor) -> torch.Tensor:
        """Score ``candidates [B, N, H, d_a]`` by the model's likelihood proxy of the action stream (higher is better)."""
        b, n = candidates.shape[:2]
        context = self._context(observation).repeat_interleave(n, dim=0)
        action = self.normalizer.normalize("action", candidates.to(self.device).flatten(0, 1))
        return -self.backbone.error(context, {ACTION: action}).view(b, n)

    @torch.no_grad()
    def rank_actions(self, observation: dict[str, Any], actions: torch.Tensor, generator: torch.Generator | None = None,
                     inference: InferenceConfig | None = None) -> torch.Tensor:
        """For a rollout coupling, how its planner would rank the chunks ``actions [B, H, d_a]`` (environment units):
        the fraction ``[B]`` of the planner's first proposals whose rolled-out future the objective scores below
        that of ``actions`` (ties count half). For the expert's chunk, 0.5 means the objective cannot tell it from
        a proposal, 1 that it would be chosen over every one. The proposals are those of an episode's first call, so
        the planner's warm start is reset, as at the start of an episode."""
        if not self.coupling.plans:
            raise SpecError(f"rank_actions needs a rollout coupling, not {self.config.spec.coupling.value}: only a rollout "
                            "scores candidate chunks")
        call, context = self._call(inference), self._context(observation)
        task = self.task_index(observation["task"])
        self.coupling.reset()  # the first proposal of an episode, not noise around an earlier plan
        proposals = self.coupling.propose(self.backbone, context, call, call.planner.candidates, generator)
        own = self.normalizer.normalize("action", actions.to(self.device))[:, None]
        scores = self.coupling.score_chunks(self.backbone, context, call, torch.cat([own, proposals], 1), task,
                                            generator)
        own_score, others = scores[:, :1], scores[:, 1:]
        return ((others < own_score).float() + 0.5 * (others == own_score).float()).mean(1)

    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_model

        weights = Path(directory) / WEIGHTS_NAME
        with atomic_path(weights) as tmp, safetensors_writes(weights):
            save_model(self, str(tmp))
        atomic_write_json(weights.parent / CONFIG_NAME, self.config.to_dict())

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> WorldActionModel:
        """Rebuild a model from ``directory``; a missing, truncated or mismatched checkpoint raises ``CheckpointError``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.exists():
                raise CheckpointError(f"{path} is missing; is {directory} a model directory written by `wam train`?")
        try:
            config = ModelConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{config_path} is not a valid model config ({e}); retrain with `wam train`") from None
        _check_weights_match(config, config_path, weights_path)
        model = cls(config)
        try:
            load_model(model, str(weights_path), strict=True, device=str(device))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise CheckpointError(f"{weights_path} is truncated or does not match {config_path} "
                                  f"({str(e).splitlines()[0][:200]}); retrain with `wam train`") from None
        return model.to(device).eval()


def _check_weights_match(config: ModelConfig, config_path: Path, weights_path: Path) -> None:
    """Compare the tensors ``config`` implies (built on the meta device: no memory) with the header of the weights
    file, so a damaged config is refused before anything is allocated."""
    from safetensors import SafetensorError, safe_open

    fix = "retrain with `wam train`"
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in WorldActionModel(config).state_dict().items()}
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{config_path} describes no buildable model ({str(e).splitlines()[0][:200]}); "
                              f"{fix}") from None
    try:
        with safe_open(str(weights_path), "pt") as f:
            stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights_path} is truncated or not a safetensors file "
                              f"({str(e).splitlines()[0][:200]}); {fix}") from None
    if stored != expected:
        differ = sorted(set(stored) ^ set(expected)) or sorted(k for k in stored if stored[k] != expected[k])
        raise CheckpointError(f"{weights_path} does not match {config_path} (first difference: {differ[0]!r}); {fix}")
