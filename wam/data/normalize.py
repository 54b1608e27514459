"""Feature normalization from a dataset's ``meta/stats.json``, held as buffers so it travels with the weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Normalizer(nn.Module):
    """Maps raw features to the scale a network wants and back.

    Actions use min-max to ``[-1, 1]`` (the range a diffusion sampler clips to); low-dimensional observations use
    mean/std; images arrive as uint8 and are scaled to ``[0, 1]`` then standardized per channel.
    """

    def __init__(self, shapes: dict[str, list[int]], modes: dict[str, str]):
        super().__init__()
        self.modes = dict(modes)
        for key, shape in shapes.items():
            stat_shape = [shape[-1], 1, 1] if modes[key] == "image" else shape
            for stat in ("a", "b"):
                self.register_buffer(_buffer(key, stat), torch.zeros(stat_shape))

    def load_stats(self, stats: dict[str, dict[str, Any]]) -> None:
        """Fill the buffers from a ``meta/stats.json`` dictionary."""
        for key, mode in self.modes.items():
            s = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in stats[key].items() if k != "count"}
            if mode == "minmax":
                # Constant dimensions would divide by zero; give them a unit range instead.
                a, b = (s["max"] - s["min"]) / 2, (s["max"] + s["min"]) / 2
            else:
                a, b = s["std"], s["mean"]
            a = torch.where(a < 1e-6, torch.ones_like(a), a)
            getattr(self, _buffer(key, "a")).copy_(a.reshape(getattr(self, _buffer(key, "a")).shape))
            getattr(self, _buffer(key, "b")).copy_(b.reshape(getattr(self, _buffer(key, "b")).shape))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        if self.modes[key] == "image":  # [..., H, W, C] uint8 -> [..., C, H, W] standardized
            x = x.float().div(255.0).movedim(-1, -3)
        return (x - getattr(self, _buffer(key, "b"))) / getattr(self, _buffer(key, "a"))

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x * getattr(self, _buffer(key, "a")) + getattr(self, _buffer(key, "b"))


def _buffer(key: str, stat: str) -> str:
    return f"{key.replace('.', '_')}__{stat}"
