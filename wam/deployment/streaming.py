"""Single-step closed loop for autoregressive backbones, with KV-cache observation replacement.

An autoregressive model's context is a window of observation frames, each encoded on its own and placed in time by
rotary positions (see ``wam.backbones.autoregressive``). So at every control tick only the new observation needs
encoding: its keys and values join the cache, the oldest frame's leave it (a sliding window of ``window`` frames,
so memory does not grow with the episode), the model generates what it needs (the next action; the future first
when its coupling reads it), and everything it generated is dropped from the cache again: the prediction of the
next observation is replaced by the real one when it arrives, instead of the whole context being re-encoded.

``kv_cache=False`` recomputes the same window from scratch at every tick: the reference the cached path must
match (``tests/test_deployment.py``) and beat (``benchmarks/kv_cache.py``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch

from wam.backbones import CachedContext
from wam.couplings import ACTION
from wam.deployment.base import Policy
from wam.model import InferenceConfig, WorldActionModel
from wam.nn.transformer import KVCache


class StreamingPolicy(Policy):
    """One model call per step; the context lives in a sliding-window KV cache (see the module docstring)."""

    regime = "single-step"

    def __init__(self, model: WorldActionModel, seed: int = 0, kv_cache: bool = True, window: int | None = None,
                 inference: InferenceConfig | None = None):
        super().__init__(model, seed, inference)
        reason = self.why_not(model)
        if reason:
            raise ValueError(reason)
        self.kv_cache = kv_cache
        self.window = model.config.n_obs if window is None else window
        if self.window < 1:
            raise ValueError(f"the streaming window must hold at least one frame, got {self.window}")
        self.frame_tokens = model.backbone.frames[1]
        self._history = deque(maxlen=self.window)  # raw observations, for the recompute path
        self.cache_tokens_max = 0  # high-water mark of the cache, to show that memory stays bounded
        self.reset()

    @staticmethod
    def why_not(model: WorldActionModel) -> str | None:
        """Why ``model`` cannot stream its context through the cache (None when it can)."""
        if not model.config.spec.capabilities.time_positions:
            return (f"KV-cache streaming needs the 'autoregressive' backbone (its context frames lie in time), not "
                    f"{model.config.spec.backbone.value!r}; deploy this model with chunked K=1 instead")
        if not model.coupling.acts_from_backbone:
            return ("KV-cache streaming generates from the backbone alone; a rollout planner or a separate post-head "
                    "acts outside it, so deploy this model with chunked K=1 instead")
        return None

    def knobs(self) -> dict[str, Any]:
        return {**super().knobs(), "n_action_steps": 1, "kv_cache": self.kv_cache, "window": self.window,
                "cache_tokens_max": self.cache_tokens_max}

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._step = 0
        self._cache: KVCache | None = None

    def _frame_tokens(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Context tokens of raw frames ``{key: [1, T, ...]}``: ``[1, T * tokens_per_frame, d]``."""
        return self.model.encoder.frame_tokens(self.model.normalize_observations(observations, future=False))

    def _context(self, observation: dict[str, Any]) -> CachedContext:
        frame = {k: torch.as_tensor(np.asarray(observation[k]))[None, None] for k in self.model.observation_keys}
        if self.kv_cache:
            if self._cache is None:  # the first frame fills the window, as training windows repeat it
                self._cache = KVCache(self.model.backbone.n_layers)
                tokens = self._frame_tokens(frame).repeat(1, self.window, 1)
            else:
                self._cache.drop_front(self.frame_tokens)  # the oldest frame leaves the window
                tokens = self._frame_tokens(frame)
            cache = self._cache
        else:
            self._remember(observation)  # the window, padded with the first frame as training windows are
            tokens = self._frame_tokens(self._batch())
            cache = KVCache(self.model.backbone.n_layers)
        new_frames = tokens.shape[1] // self.frame_tokens
        self.cache_tokens_max = max(self.cache_tokens_max, len(cache) + tokens.shape[1])
        instruction = self.model.encoder.instruction_tokens([observation["task"]])
        return CachedContext(cache, tokens, self.frame_tokens, self._step - new_frames + 1, instruction, self._step,
                             caps={ACTION: 1})

    @torch.inference_mode()
    def select_action(self, observation: dict[str, Any]) -> np.ndarray:
        def call() -> np.ndarray:
            context = self._context(observation)
            return self.model.act({"task": [observation["task"]]}, self.generator, context,
                                  self.inference)[0, 0].cpu().numpy()

        action = self._timed(call)
        self._step += 1
        return action
