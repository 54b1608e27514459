"""No coupling: ``p(a | c)`` only. The VLA boundary case, the baseline every WAM is compared to."""

from __future__ import annotations

import torch

from wam.couplings.base import ACTION, BaseCoupling


class ActionOnly(BaseCoupling):
    def loss(self, backbone, context, action, futures, step=None, labels=None):
        return backbone.loss(context, {ACTION: action})

    def act(self, backbone, context, call, generator=None, task=None):
        return backbone.sample(context, (ACTION,), call.steps, generator=generator)[ACTION], {}

    def predict(self, backbone, context, call, actions=None, generator=None) -> dict[str, torch.Tensor]:
        raise ValueError("this model has substrate 'none' (a VLA): it predicts no future")
