"""Latent actions learned from video (LAPA, Genie): the pseudo-labels of the ``latent-actions`` curriculum.

A latent action model (LAM) is an inverse-dynamics encoder into a small quantized bottleneck plus a forward decoder:
the encoder reads the frames at ``t`` and ``t + H`` (``H``: the model's action horizon) and emits ``tokens``
vectors of ``action_dim`` values, each value quantized to ``levels`` levels in [-1, 1] (finite scalar
quantization, with a straight-through gradient); the decoder must predict the frame at ``t + H`` (at half
resolution) from the frame at ``t`` and those few values. What the frame alone cannot tell, how the scene moved,
has to pass through the bottleneck, and what moves the scene is mostly the robot's action. It reads images only:
video without actions has no action, and nothing of the robot but what the camera shows.

The LAM is fitted on every frame of the mixture (video and labelled episodes) before the policy trains. Its latent
action of every frame, spread over the chunk (each token held for ``H / tokens`` steps), is an action chunk
``[H, action_dim]`` in [-1, 1]: the policy (any preset) first learns to predict it on video in place of the real,
normalized chunk, then fine-tunes on the labelled demonstrations' real actions, the recipe of LAPA.

``fit`` reports what the bottleneck carries: the decoder's error with the latent and with it zeroed, and how much
of the real action chunks of the labelled episodes a linear map from the latent explains (R^2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wam.data.lerobot import LeRobotDataset
from wam.io import atomic_path, atomic_write_json

LATENT_ACTION = "latent_action"
"""The frame feature that holds each frame's latent action chunk ``[H, action_dim]`` (in a window:
``anchor.latent_action``, which the model's loss then learns in place of the real action)."""


@dataclass(frozen=True)
class LatentActionConfig:
    image_key: str
    image_size: int
    horizon: int
    action_dim: int
    tokens: int = 2
    """Latent vectors per chunk (LAPA: 4 tokens of a codebook of 8)."""
    levels: int = 5
    """Quantization levels per value: ``tokens * action_dim * log2(levels)`` bits in all (about 19 here)."""
    width: int = 32


class LatentActionModel(nn.Module):
    def __init__(self, config: LatentActionConfig):
        super().__init__()
        if config.horizon % config.tokens:
            raise ValueError(f"{config.tokens} latent tokens cannot split a chunk of {config.horizon} steps evenly")
        self.config = config
        w, n = config.width, config.tokens * config.action_dim

        def convs(c_in: int) -> nn.Sequential:  # 64x64 -> 8x8
            layers: list[nn.Module] = []
            for c_out in (w, 2 * w, 2 * w):
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
                c_in = c_out
            return nn.Sequential(*layers)

        self.inverse = nn.Sequential(convs(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, n))
        self.frame = convs(3)
        self.film = nn.Linear(n, 4 * w)  # the latent scales and shifts the frame's features
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * w, w, 3, padding=1), nn.SiLU(), nn.Upsample(scale_factor=2),
            nn.Conv2d(w, 3, 3, padding=1))

    def images(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, side, side]`` in [-1, 1] at the model's image size."""
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1
        side = self.config.image_size
        return x if x.shape[-1] == side else F.interpolate(x, size=(side, side), mode="area")

    def encode(self, now: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
        """The quantized latent ``[B, tokens, action_dim]`` of the change from ``now`` to ``later`` (images)."""
        z = torch.tanh(self.inverse(torch.cat([now, later], 1)))
        step = 2 / (self.config.levels - 1)
        q = torch.round((z + 1) / step) * step - 1
        return (z + (q - z).detach()).view(-1, self.config.tokens, self.config.action_dim)

    def predict(self, now: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """The frame at ``t + H`` at half resolution, from the frame at ``t`` and the latent."""
        scale, shift = self.film(latent.flatten(1)).chunk(2, dim=1)
        h = self.frame(now) * (1 + scale[..., None, None]) + shift[..., None, None]
        return self.decoder(h)

    def loss(self, now: torch.Tensor, later: torch.Tensor, zero_latent: bool = False) -> torch.Tensor:
        latent = self.encode(now, later)
        if zero_latent:
            latent = torch.zeros_like(latent)
        return F.mse_loss(self.predict(now, latent), F.avg_pool2d(later, 2))

    def chunk(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, tokens, action_dim]`` -> the pseudo action chunk ``[B, H, action_dim]`` (each token held)."""
        return latent.repeat_interleave(self.config.horizon // self.config.tokens, dim=1)


def frame_pairs(dataset: LeRobotDataset, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """For every frame ``t``, itself and the frame ``t + horizon`` of its episode (its last frame past the end)."""
    now = np.arange(dataset.num_frames)
    return now, np.minimum(now + horizon, dataset.episode_bounds()[1] - 1)


def fit(dataset: LeRobotDataset, config: LatentActionConfig, steps: int, seed: int, batch_size: int = 64,
        device: str | torch.device = "cpu") -> tuple[LatentActionModel, dict[str, Any]]:
    """A LAM fitted on every frame pair of ``dataset`` for ``steps`` Adam steps, and what its latent carries."""
    torch.manual_seed(seed)
    model = LatentActionModel(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    now, later = frame_pairs(dataset, config.horizon)
    frames = dataset.frames[config.image_key]

    def batch(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (model.images(torch.from_numpy(frames[now[rows]]).to(device)),
                model.images(torch.from_numpy(frames[later[rows]]).to(device)))

    model.train()
    for _ in range(steps):
        loss = model.loss(*batch(rng.integers(0, len(now), batch_size)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    held = np.random.default_rng(seed + 1).integers(0, len(now), min(512, len(now)))
    with torch.no_grad():
        pair = batch(held)
        report = {"steps": steps, "frames": len(now), "prediction_mse": float(model.loss(*pair)),
                  "prediction_mse_without_latent": float(model.loss(*pair, zero_latent=True))}
    return model, report


@torch.no_grad()
def label(model: LatentActionModel, dataset: LeRobotDataset, batch_size: int = 256) -> np.ndarray:
    """The latent action chunk ``[N, H, action_dim]`` of every frame of ``dataset``."""
    device = next(model.parameters()).device
    now, later = frame_pairs(dataset, model.config.horizon)
    frames = dataset.frames[model.config.image_key]
    out = []
    for lo in range(0, len(now), batch_size):
        rows = slice(lo, lo + batch_size)
        latent = model.encode(model.images(torch.from_numpy(frames[now[rows]]).to(device)),
                              model.images(torch.from_numpy(frames[later[rows]]).to(device)))
        out.append(model.chunk(latent).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def probe_r2(latents: np.ndarray, dataset: LeRobotDataset, normalize: Any) -> float:
    """How much of the labelled episodes' real action chunks a least-squares linear map from their frames' latents
    explains (1 - residual / total variance), with the chunks as ``normalize`` (``[N, H, d_a]`` -> same) scales
    them for the policy."""
    horizon = latents.shape[1]
    episodes = [e for e in dataset.episodes if e.get("actions", True)]
    rows = np.concatenate([np.arange(e["dataset_from_index"], e["dataset_to_index"]) for e in episodes])
    last = dataset.episode_bounds()[1][rows] - 1
    chunks = dataset.frames["action"][np.minimum(rows[:, None] + np.arange(horizon), last[:, None])]
    x = np.c_[latents[rows].reshape(len(rows), -1), np.ones(len(rows))]
    y = normalize(chunks).reshape(len(rows), -1)
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return float(1 - ((x @ weights - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def save(model: LatentActionModel, report: dict[str, Any], directory: Path) -> None:
    from safetensors.torch import save_model

    weights = directory / "model.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_model(model, str(tmp))
    atomic_write_json(directory / "fit.json", {"config": asdict(model.config), **report})


def load(directory: Path, config: LatentActionConfig, device: str | torch.device = "cpu"
         ) -> tuple[LatentActionModel, dict[str, Any]] | None:
    """The LAM a run fitted earlier (a resumed run reuses it); None when the run has not fitted one yet;
    ``CheckpointError`` when the files are damaged or were fitted with another configuration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from wam.model import CheckpointError

    path = directory / "fit.json"
    if not path.exists():
        return None
    def damaged(e: Exception) -> CheckpointError:
        return CheckpointError(f"the latent action model in {directory} is damaged ({str(e).splitlines()[0][:160]}); "
                               "delete that directory to fit it again")

    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise damaged(e) from None
    if not isinstance(report, dict) or report.get("config") != asdict(config):
        raise CheckpointError(f"the latent action model in {directory} was fitted for "
                              f"{report.get('config') if isinstance(report, dict) else report}, not {asdict(config)}; "
                              "delete that directory to fit it again")
    model = LatentActionModel(config)
    try:
        load_model(model, str(directory / "model.safetensors"), device=str(device))
    except (OSError, SafetensorError, RuntimeError) as e:
        raise damaged(e) from None
    return model.to(device).eval(), {k: v for k, v in report.items() if k != "config"}
