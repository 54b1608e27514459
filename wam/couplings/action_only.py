"""No coupling: ``p(a | c)`` only. The VLA boundary case, the baseline every WAM is compared to."""

from __future__ import annotations

import torch

from wam.backbones.diffusion import DiffusionBackbone


class ActionOnly:
    reads: dict[str, tuple[str, ...]] = {}

    def loss(self, backbone: DiffusionBackbone, context: torch.Tensor, action: torch.Tensor,
             future: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return backbone.loss(context, {"action": action})

    def act(self, backbone: DiffusionBackbone, context: torch.Tensor, steps: int,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        return backbone.sample(context, ("action",), steps, generator=generator)["action"], None
