"""The model as an interactive simulator: a gymnasium environment whose frames are dreamed (``interactive``).

``DreamEnv`` takes its first observation from a real MetaWorld reset and never touches the simulator again. Each
``step`` takes a chunk of ``stride = future_offsets[0]`` actions, pads it to the model's horizon H by repeating its
last action, asks the model for the future those actions lead to (``predict(history, actions)``: the
``p(s | c, a)`` of a joint or rollout coupling) and decodes the frame at the first offset: that frame is the next
image observation. Only models that predict action-conditioned pixels can dream; others are refused at
construction.

The proprioceptive state (hand xyz, gripper opening) is *not* predicted by any substrate, so it is propagated
kinematically from the actions, as MetaWorld moves its mocap target: ``target += clip(a[:3]) * action_scale``
(0.01 m per control step in all 50 v3 tasks, ``SawyerXYZEnv.set_xyz_action``), clipped to the task's mocap
bounds. The real hand lags that target (a weld constraint drags it along), so the reported hand closes a fraction
``HAND_GAIN`` of the gap per step; measured against the simulator over the first 8 steps of expert and random
episodes this tracks the hand to ~3 mm, against ~20 mm for the hand put straight on the target (test_dream.py).
Contacts are not modelled: a hand pushing on an object drifts from the real one. The gripper opening keeps its
last value (the fingers are torque-driven and stop on whatever they grasp, which a kinematic rule cannot know).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from wam.anatomy import Coupling
from wam.deployment.base import history_batch
from wam.envs.metaworld import CONTROL_HZ, IMAGE_KEY, STATE_KEY, MetaWorldEnv, instruction
from wam.model import WorldActionModel
from wam.substrates.pixel import DecodedFrames, LatentFrames

PIXEL_SUBSTRATES = (DecodedFrames, LatentFrames)  # LatentFrames includes feature-token's TokenCodes
ACTION_CONDITIONED = (Coupling.JOINT, Coupling.ROLLOUT)  # couplings that model p(s | c, a)
HAND_GAIN = 0.2
"""Fraction of the gap to the mocap target the hand closes per control step (fitted on 4 tasks x 3 seeds)."""
EPISODE_CONTROL_STEPS = 500  # MetaWorld's episode limit


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
    if model.config.future_offsets[0] > model.config.horizon:
        raise ValueError(f"the first future offset ({model.config.future_offsets[0]}) lies past the action horizon "
                         f"({model.config.horizon}); train with future_offsets within the horizon")
    return pixel


class DreamEnv(gym.Env):
    """A trained WAM stepped like an environment: actions in, dreamed frames (and kinematic state) out.

    Action: a chunk of ``stride`` actions ``[stride, action_dim]`` in [-1, 1]; observation: the keys, shapes and
    dtypes of ``MetaWorldEnv``'s vision track. Reward is 0 and episodes never terminate; they are truncated after
    ``max_episode_steps`` dream steps (default: MetaWorld's 500 control steps). Memory is bounded: the history is a
    deque of ``n_obs`` observations, spaced ``stride`` control steps apart (training windows space them one step
    apart; the dream has no frames in between), and nothing else grows with the episode. ``seed`` seeds the first
    ``reset()`` that is given none (the placement and the sampler's generator).
    """

    def __init__(self, model: WorldActionModel, task: str, seed: int = 0, max_episode_steps: int | None = None):
        self._substrate = check_dreamable(model)
        self.model = model.eval()
        config = model.config
        self.task, self.instruction = task, instruction(task)
        self.stride, self.horizon = config.future_offsets[0], config.horizon
        self.max_episode_steps = EPISODE_CONTROL_STEPS // self.stride if max_episode_steps is None else max_episode_steps
        self._real = MetaWorldEnv(task, track="vision", image_size=config.observation_shapes[IMAGE_KEY][0])
        got = {k: list(s.shape) for k, s in self._real.observation_space.spaces.items()}
        expected = {k: list(v) for k, v in config.observation_shapes.items()}
        if got != expected:
            self._real.close()
            raise ValueError(f"the model expects observations {expected} but MetaWorld's vision track gives {got}; "
                             "dream with a model trained on vision-track data")
        mujoco_env = self._real._env  # MetaWorld's SawyerXYZEnv: the real action scale and mocap bounds
        self.action_scale = float(mujoco_env.action_scale)
        self._mocap_low, self._mocap_high = np.asarray(mujoco_env.mocap_low), np.asarray(mujoco_env.mocap_high)

        self.render_mode = "rgb_array"
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ / self.stride}
        self.observation_space = self._real.observation_space
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.stride, config.action_dim), np.float32)
        self._seed: int | None = seed  # used by the first reset that is given no seed
        self._generator = torch.Generator(device=model.device)
        self._history: deque[dict[str, np.ndarray]] = deque(maxlen=config.n_obs)
        self._target = np.zeros(3)  # the mocap target the hand is dragged toward
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
        self._target = observation[STATE_KEY][:3].astype(np.float64)
        self._history.clear()
        self._history.extend(observation for _ in range(self._history.maxlen))  # as the training windows do
        self._steps = 0
        return _copy(observation), {}

    def step(self, chunk):
        if not self._history:
            raise RuntimeError("call reset() before step()")
        chunk = np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0)
        if chunk.shape != self.action_space.shape:
            raise ValueError(f"a dream step takes a chunk of shape {self.action_space.shape} (stride x action_dim), "
                             f"got {chunk.shape}; pass {self.stride} actions per step")
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], self.horizon - self.stride, axis=0)])
        with torch.inference_mode():
            futures = self.model.predict(self._batch(), actions=torch.from_numpy(padded)[None],
                                         generator=self._generator)
            frames = self._substrate.decode(futures[self._substrate.name])["frames"]  # [1, F, 3, H, W] in [0, 1]
            image = frames[0, 0].mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        observation = {IMAGE_KEY: image, STATE_KEY: self._propagate_state(chunk)}
        self._history.append(observation)
        self._steps += 1
        return _copy(observation), 0.0, False, self._steps >= self.max_episode_steps, {}

    def render(self) -> np.ndarray:
        """The current (dreamed, after the first step) frame, HWC uint8."""
        if not self._history:
            raise RuntimeError("call reset() before render()")
        return self._history[-1][IMAGE_KEY].copy()

    def close(self) -> None:
        self._real.close()
        super().close()

    def _batch(self) -> dict[str, Any]:
        return history_batch(self._history, self.model.observation_keys, self.instruction)

    def _propagate_state(self, chunk: np.ndarray) -> np.ndarray:
        """The next proprioceptive state: hand dragged toward the moving mocap target, gripper unchanged."""
        state = self._history[-1][STATE_KEY].astype(np.float64)
        for action in chunk:
            self._target = np.clip(self._target + action[:3] * self.action_scale, self._mocap_low, self._mocap_high)
            state[:3] += HAND_GAIN * (self._target - state[:3])
        return state.astype(np.float32)


def _copy(observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy the caller may modify without touching the history."""
    return {k: v.copy() for k, v in observation.items()}
