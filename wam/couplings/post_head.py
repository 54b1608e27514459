"""Post-prediction head: ``p(s | c) · q(a | s, c)``. The action stream reads the predicted future.

Training noises the future and the action streams at independent levels, with the action attending to the
(noisy) future; in a fraction ``future_dropout`` of the samples the future is hidden from the action, so the same
weights also act with the future branch skipped. At inference ``future="predict"`` generates the future first and
then the action given it (imagine, then act); ``future="skip"`` never computes the future (Fast-WAM's fast path).
"""

from __future__ import annotations

from typing import Literal

import torch

from wam.backbones.diffusion import DiffusionBackbone


class PostHead:
    reads = {"action": ("future",)}

    def __init__(self, future_weight: float, future_dropout: float,
                 future_at_inference: Literal["skip", "predict"] = "skip"):
        self.future_weight, self.future_dropout = future_weight, future_dropout
        self.future_at_inference = future_at_inference

    def loss(self, backbone: DiffusionBackbone, context: torch.Tensor, action: torch.Tensor,
             future: torch.Tensor | None) -> dict[str, torch.Tensor]:
        assert future is not None, "post-head coupling needs future targets"
        hidden = torch.rand(context.shape[0], device=context.device) < self.future_dropout
        losses = backbone.loss(context, {"future": future, "action": action}, hide={("action", "future"): hidden})
        losses["future"] = self.future_weight * losses["future"]
        return losses

    def act(self, backbone: DiffusionBackbone, context: torch.Tensor, steps: int,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.future_at_inference == "skip":
            return backbone.sample(context, ("action",), steps, generator=generator)["action"], None
        future = self.predict(backbone, context, steps, generator)
        action = backbone.sample(context, ("action",), steps, given={"future": future}, generator=generator)
        return action["action"], future

    def predict(self, backbone: DiffusionBackbone, context: torch.Tensor, steps: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return backbone.sample(context, ("future",), steps, generator=generator)["future"]
