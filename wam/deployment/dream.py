"""The model as an interactive simulator: a gymnasium environment whose frames are dreamed (``interactive``).

``DreamEnv`` takes its first observation from a real reset of the model's suite and never touches the simulator
again. Each
``step`` takes a chunk of ``stride = future_offsets[0]`` actions, pads it to the model's horizon H by repeating its
last action, asks the model for the future those actions lead to (``predict(history, actions)``: the
``p(s | c, a)`` of a joint or rollout coupling) and decodes the frame at the first offset: that frame is the next
image observation. Only models that predict action-conditioned pixels can dream; others are refused at
construction.

The proprioceptive state is *not* predicted by any substrate, so it is propagated kinematically from the actions
by the suite's ``state_propagator`` (``wam.envs.base.StatePropagator``). MetaWorld moves its mocap target by
``clip(a[:3]) * action_scale`` (0.01 m per control step in all 50 v3 tasks, ``SawyerXYZEnv.set_xyz_action``),
clipped to the task's mocap bounds; the real hand lags that target (a weld constraint drags it along), so the
reported hand closes a fraction ``HAND_GAIN`` of the gap per step; measured against the simulator over the first 8
steps of expert and random episodes this tracks the hand to ~3 mm, against ~20 mm for the hand put straight on the
target (test_dream.py). Contacts are not modelled: a hand pushing on an object drifts from the real one. The
gripper opening keeps its last value (the fingers are torque-driven and stop on whatever they grasp, which a
kinematic rule cannot know). PushT's pusher is kinematic and PD-driven, so its propagation is exact.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wam.anatomy import Coupling
from wam.deployment.base import history_batch
from wam.envs import get_suite
from wam.model import WorldActionModel
from wam.substrates.pixel import DecodedFrames, LatentFrames

PIXEL_SUBSTRATES = (DecodedFrames, LatentFrames)  # LatentFrames includes feature-token's TokenCodes
ACTION_CONDITIONED = (Coupling.JOINT, Coupling.ROLLOUT)  # couplings that model p(s | c, a)


def check_dreamable(model: WorldActionModel) -> DecodedFrames | LatentFrames:
    """The substrate whose frames the dream shows; ``ValueError`` for a model that cannot dream."""
    spec = model.config.spec
    pixel = next((s for s in model.substrates.values() if isinstance(s, PIXEL_SUBSTRATES)), None)
    if pixel is None:
        raise ValueError(f"substrate {spec.substrate!r} has no pixel decoder, so there are no frames to dream; train "
                         "with --substrate pixel-decoded, pixel-latent or feature-token and --coupling joint or rollout")
    if spec.coupling not in ACTION_CONDITIONED:
        raise ValueError(f"coupling {spec.coupling.value!r} predicts p(s|c), not the p(s|c,a) a dream steps with; "
                         "train with --coupling joint or rollout")
    images = model.config.image_keys
    if len(images) > 1:
        raise ValueError(f"the model observes {len(images)} cameras ({', '.join(images)}) but a dream predicts the "
                         f"frames of one ({images[0]}); dream with a model trained on one camera")
    if model.config.future_offsets[0] > model.config.horizon:
        raise ValueError(f"the first future offset ({model.config.future_offsets[0]}) lies past the action horizon "
                         f"({model.config.horizon}); train with future_offsets within the horizon")
    return pixel


class DreamEnv(gym.Env):
    """A trained WAM stepped like an environment: actions in, dreamed frames (and kinematic state) out.

    Action: a chunk of ``stride`` actions ``[stride, action_dim]`` within the suite's action bounds; observation:
    the keys, shapes and dtypes of the suite's vision track. Reward is 0 and episodes never terminate; they are
    truncated after ``max_episode_steps`` dream steps (default: the suite's episode cap, MetaWorld's 500 or PushT's
    300 control steps). Memory is bounded: the history is a
    deque of ``n_obs`` observations, spaced ``stride`` control steps apart (training windows space them one step
    apart; the dream has no frames in between), and nothing else grows with the episode. ``seed`` seeds the first
    ``reset()`` that is given none (the placement and the sampler's generator).
    """

    def __init__(self, model: WorldActionModel, task: str, seed: int = 0, max_episode_steps: int | None = None):
        self._substrate = check_dreamable(model)
        self.model = model.eval()
        config = model.config
        suite = self.suite = get_suite(config.suite)
        self.image_key, self.state_key = suite.image_key, suite.state_key
        self.task, self.instruction = task, suite.instruction(suite.check_tasks([task])[0])
        self.stride, self.horizon = config.future_offsets[0], config.horizon
        self.max_episode_steps = (suite.max_episode_steps // self.stride if max_episode_steps is None
                                  else max_episode_steps)
        if self.image_key not in config.observation_shapes:
            raise ValueError(f"the model observes no {self.image_key}; dream with a model trained on vision-track "
                             "data")
        self._real = suite.make_env(task, track="vision", image_size=config.observation_shapes[self.image_key][0])
        got = {k: list(s.shape) for k, s in self._real.observation_space.spaces.items()}
        expected = {k: list(v) for k, v in config.observation_shapes.items()}
        if got != expected:
            self._real.close()
            raise ValueError(f"the model expects observations {expected} but the {suite.name} vision track gives "
                             f"{got}; dream with a model trained on vision-track data")
        self.propagator = suite.state_propagator(self._real)

        self.render_mode = "rgb_array"
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": suite.control_hz / self.stride}
        self.observation_space = self._real.observation_space
        low, high = suite.action_bounds()
        self.action_space = gym.spaces.Box(np.tile(low, (self.stride, 1)), np.tile(high, (self.stride, 1)),
                                           (self.stride, config.action_dim), np.float32)
        self._seed: int | None = seed  # used by the first reset that is given no seed
        self._generator = torch.Generator(device=model.device)
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=config.n_obs)
        self._steps = 0

    @property
    def history(self) -> deque[dict[str, np.ndarray]]:
        """The last ``n_obs`` observations, oldest first (read-only use)."""
        return self._history

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None:
            seed, self._seed = self._seed, None
        super().reset(seed=seed)
        observation, _ = self._real.reset(seed=seed)
        self._generator.manual_seed(seed if seed is not None else int(self.np_random.integers(2**62)))
        self.model.reset()
        self.propagator.reset(observation)
        self._history.clear()
        self._history.extend(observation for _ in range(self._history.maxlen))  # as the training windows do
        self._steps = 0
        return _copy(observation), {}

    def step(self, chunk):
        if not self._history:
            raise RuntimeError("call reset() before step()")
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.shape != self.action_space.shape:
            raise ValueError(f"a dream step takes a chunk of shape {self.action_space.shape} (stride x action_dim), "
                             f"got {chunk.shape}; pass {self.stride} actions per step")
        chunk = np.clip(chunk, self.action_space.low, self.action_space.high)
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.horizon - self.stride, axis=0)])
        with torch.inference_mode():
            futures = self.model.predict(self._batch(), actions=torch.from_numpy(padded)[None],
                                         generator=self._generator)
            frames = self._substrate.decode(futures[self._substrate.name])["frames"]  # [1, F, 3, H, W] in [0, 1]
            image = frames[0, 0].mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        state = self.propagator.step(self._history[-1][self.state_key], chunk)
        observation = {self.image_key: image, self.state_key: state}
        self._history.append(observation)
        self._steps += 1
        return _copy(observation), 0.0, False, self._steps >= self.max_episode_steps, {}

    def render(self) -> np.ndarray:
        """The current (dreamed, after the first step) frame, HWC uint8."""
        if not self._history:
            raise RuntimeError("call reset() before render()")
        return self._history[-1][self.image_key].copy()

    def close(self) -> None:
        self._real.close()
        super().close()

    def _batch(self) -> dict[str, Any]:
        return history_batch(self._history, self.model.observation_keys, self.instruction)


def _copy(observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy the caller may modify without touching the history."""
    return {k: v.copy() for k, v in observation.items()}
