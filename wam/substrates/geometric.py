"""Geometric and affordance substrates, built from the simulator ground truth recorded at collection.

Both read ``groundtruth.keypoints_xyz`` / ``groundtruth.keypoints_uv`` (end effector, key object, goal in every
suite; see ``wam.envs.base.KEYPOINT_ROLES``), which are labels for the future only and never part of an
observation.

- ``geometric``: per future step and keypoint one token: the 3-D position (standardized with the dataset's
  statistics) and the 2-D image flow of the tracked point since ``t`` (in units of a quarter image);
- ``affordance``: per future step a low-resolution map with three channels: a goal heatmap (where the task ends),
  a contact heatmap (where the hand must touch: the key object) and a progress map (the episode's progress at
  that step, a value map), cut into ``4 x 4`` patches.
"""

from __future__ import annotations

import torch

from wam.anatomy import Substrate
from wam.backbones.base import Stream
from wam.envs.base import KEYPOINT_ROLES as KEYPOINTS
from wam.substrates.base import (
    STANDARD_RANGE,
    UNIT_RANGE,
    FutureSubstrate,
    SubstrateInputs,
    SubstrateSizing,
    patchify,
    unpatchify,
)

XYZ, UV = "groundtruth.keypoints_xyz", "groundtruth.keypoints_uv"
FLOW_SCALE = 4.0  # flow is divided by image_size / 4 so typical motions are O(1)


class KeypointTracks(FutureSubstrate):
    """Future tokens ``[B, n_future * n_kp, 5]``: standardized xyz and image flow of every keypoint."""

    kind = Substrate.GEOMETRIC

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> KeypointTracks:
        return cls(sizing.n_future, sizing.image_size)
    future_keys = (XYZ, UV)
    anchor_keys = (UV,)

    def __init__(self, n_future: int, image_size: int):
        super().__init__()
        self.n_future, self.image_size = n_future, image_size
        self.stream = Stream(n_future * len(KEYPOINTS), 5, clip=STANDARD_RANGE)
        self.register_buffer("xyz_mean", torch.zeros(len(KEYPOINTS), 3))
        self.register_buffer("xyz_std", torch.ones(len(KEYPOINTS), 3))

    def fit(self, dataset, steps: int, seed: int = 0) -> None:
        xyz = torch.from_numpy(dataset.frames[XYZ]).float()
        self.xyz_mean.copy_(xyz.mean(0))
        self.xyz_std.copy_(xyz.std(0).clamp_min(1e-3))

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        device = self.xyz_mean.device
        xyz = (inputs.batch[f"future.{XYZ}"].to(device) - self.xyz_mean) / self.xyz_std  # [B, F, K, 3]
        uv = inputs.batch[f"future.{UV}"].to(device)
        flow = (uv - inputs.batch[f"anchor.{UV}"].to(device)[:, None]) * FLOW_SCALE / self.image_size
        return torch.cat([xyz, flow], dim=-1).flatten(1, 2)

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        t = tokens.reshape(tokens.shape[0], self.frames_in(tokens), len(KEYPOINTS), 5)
        return {"keypoints_xyz": t[..., :3] * self.xyz_std + self.xyz_mean,
                "flow_uv": t[..., 3:] * self.image_size / FLOW_SCALE}


class AffordanceMaps(FutureSubstrate):
    """Future tokens: goal, contact and progress maps at ``map_size`` pixels, ``4 x 4`` patches per step."""

    kind = Substrate.AFFORDANCE

    @classmethod
    def build(cls, sizing: SubstrateSizing) -> AffordanceMaps:
        return cls(sizing.n_future, sizing.image_size)
    future_keys = (UV, "progress")
    channels = ("goal", "contact", "progress")

    def __init__(self, n_future: int, image_size: int, map_size: int = 16, sigma: float = 1.5):
        super().__init__()
        self.n_future, self.image_size, self.map_size, self.sigma = n_future, image_size, map_size, sigma
        self.patch = map_size // 4
        self.stream = Stream(n_future * 16, len(self.channels) * self.patch ** 2, clip=UNIT_RANGE)

    def maps(self, uv: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """Keypoints ``[B, F, K, 2]`` (pixels) and progress ``[B, F]`` -> maps ``[B, F, 3, m, m]`` in [-1, 1]."""
        m = self.map_size
        cells = (torch.arange(m, device=uv.device) + 0.5) * self.image_size / m
        def heat(point: torch.Tensor) -> torch.Tensor:  # [B, F, 2] -> [B, F, m, m]
            du = (cells[None, None, None, :] - point[..., 0, None, None]) * m / self.image_size
            dv = (cells[None, None, :, None] - point[..., 1, None, None]) * m / self.image_size
            return torch.exp(-(du ** 2 + dv ** 2) / (2 * self.sigma ** 2))
        goal, contact = heat(uv[:, :, KEYPOINTS.index("goal")]), heat(uv[:, :, KEYPOINTS.index("object")])
        value = progress[..., None, None].expand_as(goal)
        return torch.stack([goal, contact, value], dim=2) * 2 - 1

    def targets(self, inputs: SubstrateInputs) -> torch.Tensor:
        device = next(iter(inputs.observations.values())).device
        maps = self.maps(inputs.batch[f"future.{UV}"].to(device), inputs.batch["future.progress"].to(device))
        return patchify(maps, self.patch)

    def decode(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = unpatchify(tokens, self.frames_in(tokens), len(self.channels), self.map_size, self.patch)
        return {"maps": ((maps + 1) / 2).clamp(0, 1)}
