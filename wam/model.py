"""``WorldActionModel``: a substrate, a backbone and a coupling composed behind one contract.

Contract (LeRobot-style, extended for WAMs):

- ``loss(batch) -> (loss, info)``: the training objective ``L_act + lambda L_gen`` of the coupling;
- ``act(observation) -> action chunk [B, H, d_a]`` in environment units;
- ``predict(observation, actions=None) -> future tokens`` in the substrate space;
- ``score(observation, candidates) -> [B, N]``: how likely the model finds each candidate action chunk;
- ``save(dir)`` / ``WorldActionModel.load(dir)``: ``config.json`` + ``model.safetensors``, no pickle.

Batches are dictionaries of raw tensors as produced by ``wam.data.windows`` (or by the deployment wrapper):
observation history per key ``[B, n_obs, ...]``, ``future.<key>`` for training, ``action`` ``[B, H, d_a]`` and
``task`` (instruction strings). Normalization happens here, with statistics saved in the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from wam.anatomy import Coupling, SpecError, Substrate, WAMSpec
from wam.backbones.diffusion import DiffusionBackbone
from wam.couplings import ActionOnly, PostHead
from wam.data.normalize import Normalizer
from wam.io import atomic_write_json
from wam.nn.context import ContextEncoder
from wam.nn.layers import random_shift
from wam.substrates.feature import EncoderOnlyFeatures

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


class CheckpointError(RuntimeError):
    """A run directory whose checkpoint is missing, truncated or does not match its config."""


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: its 4-tuple, input shapes, sizes and inference knobs."""

    spec: WAMSpec = field(default_factory=WAMSpec)
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
    dropout: float = 0.1
    train_timesteps: int = 100
    inference_steps: int = 10
    """DDIM steps per call: the sampler's fidelity-latency knob."""
    future_weight: float = 1.0
    """lambda in L = L_act + lambda L_gen."""
    future_dropout: float = 0.5
    """Fraction of training samples in which the action cannot see the future (so skipping it is in-distribution)."""
    future_at_inference: Literal["skip", "predict"] = "skip"
    augment_pad: int = 0
    """Random-shift augmentation in pixels (0 disables). Off by default: with MetaWorld's fixed camera the absolute
    image position of an object is what locates it, and shifting the image blurs exactly that (measured: 42% vs
    92% success on drawer-open/button-press-topdown, see the README)."""

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = WAMSpec(**self.spec)
        self.future_offsets = tuple(self.future_offsets)
        self.image_channels = tuple(self.image_channels)
        self.spec.require_implemented()
        if self.spec.is_wam and not self.future_offsets:
            raise SpecError(f"substrate {self.spec.substrate.value!r} needs future_offsets (which future frames to "
                            "predict), e.g. (8, 16)")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise SpecError(f"n_action_steps (K={self.n_action_steps}) must lie in [1, horizon={self.horizon}]")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise CheckpointError(f"config.json has unknown keys {unknown}; it was written by another wam version")
        return cls(**d)


class WorldActionModel(nn.Module):
    """A WAM (or, with substrate 'none', the VLA baseline) built from its ``ModelConfig``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        spec = config.spec
        modes = {k: ("image" if len(s) == 3 else "meanstd") for k, s in config.observation_shapes.items()}
        shapes = {**config.observation_shapes, "action": [config.action_dim]}
        self.normalizer = Normalizer(shapes, {**modes, "action": "minmax"})
        self.encoder = ContextEncoder(config.observation_shapes, config.vocabulary, config.d_model, config.n_obs,
                                      config.image_channels)
        streams = {"action": (config.horizon, config.action_dim)}
        self.substrate: EncoderOnlyFeatures | None = None
        if spec.substrate is Substrate.FEATURE_ENCODER_ONLY:
            self.substrate = EncoderOnlyFeatures(len(config.future_offsets), len(config.observation_shapes),
                                                 config.d_model)
            streams["future"] = self.substrate.shape
        if spec.coupling is Coupling.POST_HEAD:
            self.coupling: ActionOnly | PostHead = PostHead(config.future_weight, config.future_dropout,
                                                            config.future_at_inference)
        else:
            self.coupling = ActionOnly()
        self.backbone = DiffusionBackbone(config.d_model, config.n_layers, config.n_heads, self.encoder.n_tokens,
                                          streams, self.coupling.reads, config.train_timesteps,
                                          clip={"action": True}, dropout=config.dropout)

    def set_future_at_inference(self, mode: Literal["skip", "predict"]) -> None:
        """Choose whether ``act`` generates the future stream first; a model without one refuses ``predict``."""
        if not isinstance(self.coupling, PostHead):
            if mode == "predict":
                raise SpecError(f"coupling {self.config.spec.coupling.value!r} has no future stream to predict")
            return
        self.config.future_at_inference = self.coupling.future_at_inference = mode

    @property
    def observation_keys(self) -> list[str]:
        return sorted(self.config.observation_shapes)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _observations(self, batch: dict[str, Any], future: bool) -> dict[str, torch.Tensor]:
        """Normalize (and, in training, augment) the observation history and optional future frames."""
        device = self.device
        out = {}
        for key in self.observation_keys:
            frames = [batch[key]] + ([batch[f"future.{key}"]] if future else [])
            x = self.normalizer.normalize(key, torch.cat(frames, dim=1).to(device))
            if x.ndim == 5 and self.training and self.config.augment_pad:
                x = random_shift(x, self.config.augment_pad)  # history and future frames move together
            n = batch[key].shape[1]
            out[key] = x[:, :n]
            if future:
                out[f"future.{key}"] = x[:, n:]
        return out

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss of one batch, and its parts for logging."""
        obs = self._observations(batch, future=self.substrate is not None)
        context = self.encoder(obs, batch["task"])
        action = self.normalizer.normalize("action", batch["action"].to(self.device))
        future = self.substrate.targets(self.encoder, obs) if self.substrate is not None else None
        losses = self.coupling.loss(self.backbone, context, action, future)
        total = sum(losses.values())
        return total, {f"loss/{k}": v.item() for k, v in losses.items()}

    def _context(self, observation: dict[str, Any]) -> torch.Tensor:
        return self.encoder(self._observations(observation, future=False), observation["task"])

    @torch.no_grad()
    def act(self, observation: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """An action chunk ``[B, H, d_a]`` in environment units for an observation history batch."""
        action, _ = self.coupling.act(self.backbone, self._context(observation), self.config.inference_steps,
                                      generator)
        return self.normalizer.unnormalize("action", action)

    @torch.no_grad()
    def predict(self, observation: dict[str, Any], actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The predicted future in substrate space, ``[B, N_tok, d]``."""
        if self.substrate is None:
            raise SpecError("this model has substrate 'none' (a VLA): it predicts no future")
        if actions is not None:
            raise SpecError(f"coupling {self.config.spec.coupling.value!r} predicts p(s|c), not p(s|c,a); "
                            "action-conditioned prediction needs coupling 'rollout' or 'joint'")
        return self.coupling.predict(self.backbone, self._context(observation), self.config.inference_steps,
                                     generator)

    @torch.no_grad()
    def score(self, observation: dict[str, Any], candidates: torch.Tensor) -> torch.Tensor:
        """Score ``candidates [B, N, H, d_a]`` by the negative denoising error of the action stream (higher is better)."""
        b, n = candidates.shape[:2]
        context = self._context(observation).repeat_interleave(n, dim=0)
        action = self.normalizer.normalize("action", candidates.to(self.device).flatten(0, 1))
        return -self.backbone.denoising_error(context, {"action": action}).view(b, n)

    def save(self, directory: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{WEIGHTS_NAME}.tmp"
        save_model(self, str(tmp))
        tmp.replace(directory / WEIGHTS_NAME)
        atomic_write_json(directory / CONFIG_NAME, self.config.to_dict())

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
        model = cls(config)
        try:
            load_model(model, str(weights_path), strict=True, device=str(device))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise CheckpointError(f"{weights_path} is truncated or does not match {config_path} "
                                  f"({str(e).splitlines()[0][:200]}); retrain with `wam train`") from None
        return model.to(device).eval()
