"""Couplings: how the action binds to the predicted future. Each decides which streams the backbone learns
and generates, which it is given, and how the action is read out."""

from wam.couplings.action_only import ActionOnly
from wam.couplings.post_head import PostHead

__all__ = ["ActionOnly", "PostHead"]
