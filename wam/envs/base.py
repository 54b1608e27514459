"""The suite interface: everything the rest of the package may ask of a simulator.

A suite is a family of tasks in one simulator (MetaWorld's 50 manipulation tasks, PushT). It declares its tasks and
named task groups, builds an environment for (task, track, image size, declared shift), provides a scripted expert
over the true simulator state, and states its control rate, episode cap, metrics, feature schema, instruction text,
factors of variation (``wam.envs.variation``) and ground-truth keypoints. Collection, training, evaluation, the
dream and the benchmark ask the suite named by the dataset (``meta/info.json`` ``wam.suite``) or the model
(``ModelConfig.suite``) and nothing else.

Every environment a suite builds follows one contract (``SuiteEnv``): ``reset(seed=s)`` draws a reproducible
start; ``step(action)`` returns ``(observation, reward, success, truncated, info)`` with ``terminated`` meaning
success and ``info["is_success"]``; observations use the dataset's own keys; ``ground_truth()`` gives the
``KEYPOINT_ROLES`` in world and image coordinates; ``render()`` gives the camera frame. An episode that ends
without success (truncated at the cap) names what went wrong in ``info["failure"]``: one of the suite's
``failure_tags``, computed from simulator ground truth the policy never sees.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Protocol

import gymnasium as gym
import numpy as np

from wam.envs.variation import Factor, Shift, parse_shift

Track = Literal["vision", "state"]
STANDARD_GROUPS = ("all", "wam-bench", "quick", "quickstart")
"""The task groups every suite has (``Suite.groups``)."""
KEYPOINT_ROLES = ("ee", "object", "goal")
"""Rows of ``groundtruth.keypoints_xyz`` / ``keypoints_uv`` in every suite: the end effector (or pusher), the key
object and the goal. The geometric and affordance substrates learn them; they are never observed."""


def image_feature(size: int) -> dict[str, Any]:
    """The dataset feature of a square RGB camera image of side ``size``."""
    return {"dtype": "image", "shape": [size, size, 3], "names": ["height", "width", "channels"]}


class SuiteEnv(Protocol):
    """What a suite's environment provides beyond ``gymnasium.Env``."""

    observation_space: gym.spaces.Dict
    action_space: gym.spaces.Box
    task: str
    render_images: bool
    """Set False when the next step's camera image will not be read (a chunked policy between replans): the
    observation may then lack the image, which spares rendering, the dearest part of a vision-track step. A hint:
    an environment that renders as part of stepping keeps the image. ``reset`` always renders."""

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]: ...

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]: ...

    def render(self) -> np.ndarray: ...

    def ground_truth(self) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Expert(Protocol):
    """A scripted expert behind the policy interface; it reads the true state of the environment it is bound to."""

    def reset(self) -> None: ...

    def select_action(self, observation: dict[str, Any] | None = None) -> np.ndarray: ...


class StatePropagator(Protocol):
    """How the dream moves the proprioceptive state between dreamed frames: the robot's own kinematics, which need
    no world model (``wam.deployment.dream``)."""

    dims: int
    """How many leading state dimensions it integrates (a hand's xyz, a pusher's xy); the rest keep their value."""
    unit: str
    """Their unit, for reports."""

    def reset(self, observation: dict[str, np.ndarray]) -> None: ...

    def step(self, state: np.ndarray, chunk: np.ndarray) -> np.ndarray: ...


class Suite(ABC):
    """One simulator's tasks behind the interface the package uses (see the module docstring)."""

    name: ClassVar[str]
    control_hz: ClassVar[float]
    """Actions per simulated second."""
    max_episode_steps: ClassVar[int]
    """The suite's own episode cap in control steps."""
    default_image_size: ClassVar[int]
    """Side of the square camera image of the vision track unless ``--image-size`` says otherwise."""
    robot_type: ClassVar[str]
    image_key: ClassVar[str]
    state_key: ClassVar[str] = "observation.state"
    keypoint_names: ClassVar[tuple[str, str, str]]
    """This suite's names for the ``KEYPOINT_ROLES``, in that order."""
    factors: ClassVar[dict[str, Factor]] = {}
    """The declared factors of variation (``wam.envs.variation``): what ``--shift NAME=LEVEL`` can change."""
    score: ClassVar[str]
    """What the per-step reward measures, whose per-episode maximum is reported beside success."""
    failure_tags: ClassVar[dict[str, str]]
    """What a failed episode's ``info["failure"]`` can name, each with its definition in simulator ground truth
    (the contact-sensitive failure modes reported beside success)."""

    @abstractmethod
    def tasks(self) -> list[str]:
        """Every task of the suite."""

    def groups(self) -> dict[str, list[str]]:
        """Named task groups (``metaworld/easy``). Every suite has ``all``, and the task sets the commands use
        by default: ``wam-bench`` (``wam bench``), ``quick`` (``wam bench --quick``) and ``quickstart``; a suite
        with few tasks uses all of them for each."""
        return dict.fromkeys(STANDARD_GROUPS, self.tasks())

    def instruction(self, task: str) -> str:
        """The task as a natural-language instruction for the model's context."""
        return task.replace("-", " ")

    env_class: ClassVar[type]
    """The environment class, built as ``env_class(task, track=, image_size=, max_episode_steps=, render_size=,
    shift=)`` and following ``SuiteEnv``."""
    expert_class: ClassVar[type]
    """The scripted expert class, built as ``expert_class(env)`` and following ``Expert``."""

    def make_env(self, task: str, track: Track = "vision", image_size: int | None = None,
                 max_episode_steps: int | None = None, shift: str = "none",
                 render_size: int | None = None) -> SuiteEnv:
        """An environment of ``task``, by default at the suite's image size and episode cap; ``render_size``
        renders frames larger than the observation (videos)."""
        return self.env_class(task, track=track, image_size=image_size or self.default_image_size,
                              max_episode_steps=max_episode_steps or self.max_episode_steps, render_size=render_size,
                              shift=shift)

    def expert(self, env: SuiteEnv) -> Expert:
        """The scripted expert bound to ``env`` (an environment this suite built)."""
        return self.expert_class(env)

    @abstractmethod
    def observation_features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        """The ``observation.*`` feature declarations of ``track``, in ``meta/info.json`` form."""

    @abstractmethod
    def action_feature(self) -> dict[str, Any]:
        """The ``action`` feature declaration (its shape and what each dimension means)."""

    @abstractmethod
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The lowest and highest action the environment accepts, per dimension."""

    def free_goal(self, task: str) -> bool:
        """Whether ``task``'s goal is placed at random at every reset with no body placed with it, so that the camera
        image shows it at most through a small marker (reports flag such tasks with the marker's size). By default
        goals are shown plainly or fixed."""
        return False

    def goal_marker_pixels(self, task: str, image_size: int) -> int:
        """How many pixels of the camera image at ``image_size`` the goal marker of a ``free_goal`` task covers where
        the goal is (0: nothing shows it): all an image policy has to read the goal from."""
        raise ValueError(f"the {self.name} suite draws no goal marker")

    def state_propagator(self, env: SuiteEnv) -> StatePropagator:
        """The dream's proprioception model for ``env``; suites whose robot state cannot be integrated from the
        actions alone do not dream."""
        raise ValueError(f"the {self.name} suite has no kinematic model of its proprioception, so it cannot dream")

    def teleop_action(self, state: np.ndarray, command: np.ndarray) -> np.ndarray:
        """The action a person's command means for this robot (``wam play``): ``command`` is ``[x, y, z, grip]``
        in [-1, 1] (arrow keys, W/S, space) and ``state`` the proprioception it starts from."""
        raise ValueError(f"the {self.name} suite has no keyboard mapping, so its dream cannot be driven by hand")

    def executable(self, states: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """Per chunk step, whether the robot can execute it as commanded from proprioception ``states`` ``[B, S]``:
        by default, every action inside the action bounds. ``chunks`` is ``[B, H, action_dim]``."""
        low, high = self.action_bounds()
        return ((chunks >= low - 1e-6) & (chunks <= high + 1e-6)).all(-1)

    # Derived from the declarations above; suites do not override these.

    def features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        """Every feature a collection of ``track`` writes: observations, action, reward and flags, and the
        simulator's ground-truth keypoints (never part of a policy's observation)."""
        names = list(self.keypoint_names)
        return {
            **self.observation_features(track, image_size),
            "action": self.action_feature(),
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "next.success": {"dtype": "bool", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
            # Stored flat (LeRobot's tools take only scalars, vectors and images), reshaped to [K, 3] / [K, 2] on load.
            "groundtruth.keypoints_xyz": {"dtype": "float32", "shape": [len(names) * 3],
                                          "names": [f"{n}.{a}" for n in names for a in "xyz"]},
            "groundtruth.keypoints_uv": {"dtype": "float32", "shape": [len(names) * 2],
                                         "names": [f"{n}.{a}" for n in names for a in "uv"]},
        }

    def expert_successes(self, task: str, seeds: list[int], track: Track = "state",
                         max_episode_steps: int | None = None, shift: str = "none") -> list[bool]:
        """Whether the scripted expert succeeds from each seeded start of ``task``, run exactly as ``wam collect``
        runs it (first attempt, no retry), at the suite's episode cap unless told otherwise, under ``shift``."""
        env = self.make_env(task, track=track, max_episode_steps=max_episode_steps, shift=shift)
        expert = self.expert(env)
        outcomes = []
        try:
            for seed in seeds:
                observation, _ = env.reset(seed=seed)
                expert.reset()
                success = truncated = False
                while not (success or truncated):
                    observation, _, success, truncated, _ = env.step(expert.select_action(observation))
                outcomes.append(bool(success))
        finally:
            env.close()
        return outcomes

    def track_of(self, observation_shapes: dict[str, Any]) -> Track:
        """The track whose observations have these keys."""
        return "vision" if self.image_key in observation_shapes else "state"

    def check_tasks(self, tasks: list[str]) -> list[str]:
        """``tasks`` unchanged, or ``ValueError`` naming the first one this suite does not have."""
        if not tasks:
            raise ValueError(f"no task given; pass --tasks NAME[,NAME...], e.g. --tasks {self.tasks()[0]}")
        known = self.tasks()
        for task in tasks:
            if task not in known:
                close = [k for k in known if task.split("-")[0] in k][:5] or known[:5]
                raise ValueError(f"unknown {self.name} task {task!r}; did you mean one of: {', '.join(close)}? "
                                 f"(groups: {', '.join(f'{self.name}/{g}' for g in self.groups())})")
        return tasks

    def factor_applies(self, factor: str, task: str) -> bool:
        """Whether ``factor`` can shift ``task`` (by default every declared factor applies to every task)."""
        return factor in self.factors

    def parse_shift(self, spec: str) -> Shift:
        """The shift ``spec`` (``camera=medium,colour=up-to-weak``, ``none``) names, or ``ValueError``."""
        return parse_shift(spec, self.factors, self.name)

    def check_shift(self, spec: str, tasks: list[str] | None = None, where_applicable: bool = False) -> str:
        """``spec`` in canonical form (the suite's factor order, levels explicit), or ``ValueError`` if it names an
        unknown factor or level, or a factor that cannot shift one of ``tasks`` (``where_applicable``: that can
        shift none of them; the others are left unshifted by it, see ``task_shift``)."""
        shift = self.parse_shift(spec)
        for setting in shift.settings:
            cannot = [task for task in tasks or [] if not self.factor_applies(setting.factor, task)]
            if cannot and (not where_applicable or len(cannot) == len(tasks or [])):
                which = f"any of {', '.join(cannot)}" if where_applicable and len(cannot) > 1 else cannot[0]
                raise ValueError(f"factor {setting.factor!r} cannot shift {which}; it is: "
                                 f"{self.factors[setting.factor].description}")
        return str(shift)

    def task_shift(self, spec: str, task: str) -> str:
        """The part of the shift ``spec`` that can shift ``task``: its factors that apply to it (canonical form)."""
        shift = self.parse_shift(spec)
        return str(shift.only([s.factor for s in shift.settings if self.factor_applies(s.factor, task)]))
