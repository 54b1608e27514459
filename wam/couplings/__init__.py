"""Couplings: how the action binds to the predicted future. Each decides which streams the backbone learns and
generates, which it is given, and how the action is read out."""

from wam.couplings.action_only import ActionOnly
from wam.couplings.base import ACTION, BaseCoupling
from wam.couplings.joint import Joint, PostHead
from wam.couplings.rollout import Rollout

__all__ = ["ACTION", "ActionOnly", "BaseCoupling", "Joint", "PostHead", "Rollout"]
