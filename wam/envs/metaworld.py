"""MetaWorld v3 as a gymnasium environment with a vision track and a privileged-state track.

Vision track: a 64x64 RGB image from the ``corner2`` camera, turned upright (MetaWorld's corner cameras come out
rotated 180 degrees), plus 4-d proprioception (hand xyz, gripper opening). Shadows, reflections and multisampling
are switched off, which makes offscreen frames about 8x faster at no cost for a 64x64 policy input.
State track: the 39-d MetaWorld state (hand, gripper, object poses, previous frame, goal).

Observations use the dataset's own keys (``observation.state``, ``observation.images.corner2``) so a policy sees
in the simulator exactly what it saw in training. ``ground_truth()`` exposes the 3-D positions of the end effector,
the task's key object and the goal, with their projections into the image, for substrates that need them.
``MetaWorldSuite`` is this module's entry in the suite registry (``wam.envs``).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from wam.envs.base import StatePropagator, Suite, Track

os.environ.setdefault("MUJOCO_GL", "egl")

CAMERA = "corner2"
IMAGE_KEY = f"observation.images.{CAMERA}"
STATE_KEY = "observation.state"
CONTROL_HZ = 80.0  # MetaWorld: one action per 5 physics steps of 2.5 ms
MAX_EPISODE_STEPS = 500  # MetaWorld's own ``max_path_length``
ACTION_SCALE = 0.01  # the mocap target moves by action * 1 cm per control step in all 50 v3 tasks
MOCAP_LOW, MOCAP_HIGH = np.array([-0.5, 0.4, 0.05]), np.array([0.5, 1.0, 0.5])
HAND_GAIN = 0.2
"""Fraction of the gap to the mocap target the hand closes per control step (fitted on 4 tasks x 3 seeds)."""

SHIFTS: dict[str, str] = {
    "none": "the training distribution",
    "camera": "the camera moved 5 cm up and 5 cm toward the scene's far side",
    "colour": "every material and geom colour tinted by (0.85, 1.0, 1.15) in RGB",
    "placement": "object and goal placed outside the training range: every axis MetaWorld randomizes is pushed past "
                 "its range by up to a quarter of its width, on a random side",
}
"""The declared distribution shifts of the generalization probe (``MetaWorldEnv(shift=...)``)."""
DIFFICULTY = {
    "easy": ("button-press", "button-press-topdown", "button-press-topdown-wall", "button-press-wall",
             "coffee-button", "dial-turn", "door-close", "door-lock", "door-open", "door-unlock", "drawer-close",
             "drawer-open", "faucet-close", "faucet-open", "handle-press", "handle-press-side", "handle-pull",
             "handle-pull-side", "lever-pull", "peg-unplug-side", "plate-slide", "plate-slide-back",
             "plate-slide-back-side", "plate-slide-side", "reach", "reach-wall", "window-close", "window-open"),
    "medium": ("basketball", "bin-picking", "box-close", "coffee-pull", "coffee-push", "hammer", "peg-insert-side",
               "push-wall", "soccer", "sweep", "sweep-into"),
    "hard": ("assembly", "hand-insert", "pick-out-of-hole", "pick-place", "push", "push-back"),
    "very-hard": ("disassemble", "pick-place-wall", "shelf-place", "stick-pull", "stick-push"),
}
"""The difficulty groups of Seo et al. (2022), by which DP3, VPP and later papers report MetaWorld (v3 names)."""
WAM_BENCH = ("button-press-topdown-v3", "drawer-open-v3", "drawer-close-v3", "door-open-v3", "window-open-v3",
             "faucet-open-v3", "handle-press-v3", "coffee-button-v3")
"""The 8 tasks of WAM-Bench (``wam bench``): easy tasks whose scripted demonstrations succeed within 114 steps."""
CAMERA_SHIFT = np.array([0.0, 0.05, 0.05])
COLOUR_TINT = np.array([0.85, 1.0, 1.15])
PLACEMENT_MARGIN = 0.25
MOVED = 0.01  # m: the key object counts as moved once 1 cm from where it started
NEAR_GOAL = 0.1  # m: about twice MetaWorld's success radii (5 to 8 cm for most tasks)
HAND_GOAL_TASKS = ("reach-v3", "reach-wall-v3")
"""Tasks whose goal is for the hand itself: the hand is what moves to the goal, and nothing need be touched."""
FAILURE_TAGS = {
    "never-reached": "the hand never touched any of the task's objects (no MuJoCo contact between the hand's geoms "
                     "and a body that is neither robot, table nor world)",
    "no-effect": "the hand touched the task's objects but never moved the key object 1 cm from its start (in reach "
                 "tasks: the hand never moved 1 cm)",
    "stalled-near-goal": "the key object (the hand, in reach tasks) ended within 10 cm of the goal (about twice "
                         "MetaWorld's success radii), short of MetaWorld's success check",
    "grasp-lost": "the key object was held between both finger pads at some step, was not held at the end, and "
                  "ended away from the goal",
    "misplaced": "the key object (the hand, in reach tasks) moved but ended more than 10 cm from the goal",
}
"""The failure tags of the MetaWorld suite, tested in this order; the first that holds names a failed episode."""


def task_names() -> list[str]:
    """The 50 MetaWorld v3 task names, e.g. ``drawer-open-v3``."""
    import metaworld

    return list(metaworld.ALL_V3_ENVIRONMENTS)


class MetaWorldEnv(gym.Env):
    """One MetaWorld v3 task; every ``reset(seed=s)`` draws a fresh, reproducible object and goal placement."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    camera_position: np.ndarray | None = None
    """Where the ``corner2`` camera sits; None: where MetaWorld's scene puts it."""

    def __init__(self, task: str, track: Track = "vision", image_size: int = 64,
                 max_episode_steps: int = MAX_EPISODE_STEPS, render_size: int | None = None, shift: str = "none"):
        import metaworld

        MetaWorldSuite().check_tasks([task])
        MetaWorldSuite().check_shift(shift)
        self.task, self.track, self.image_size = task, track, image_size
        self.max_episode_steps = max_episode_steps
        self.render_mode = "rgb_array"
        self.render_images = True
        size = render_size or image_size
        self._env = metaworld.ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array", camera_name=CAMERA,
                                                         width=size, height=size)
        # Goal-observable, freshly randomized placement at every reset, driven by the env's own seeded RNG.
        self._env._partially_observable = False
        self._env._freeze_rand_vec = False
        self._env.seeded_rand_vec = True
        self._env._set_task_called = True
        model = self._env.model
        model.light_castshadow[:] = 0
        model.mat_reflectance[:] = 0
        model.vis.quality.offsamples = 0
        self._cam_id = model.camera(CAMERA).id
        if self.camera_position is not None:
            model.cam_pos[self._cam_id] = self.camera_position
        self.shift = shift
        if shift == "camera":
            model.cam_pos[self._cam_id] += CAMERA_SHIFT
        elif shift == "colour":
            model.mat_rgba[:, :3] = np.clip(model.mat_rgba[:, :3] * COLOUR_TINT, 0, 1)
            model.geom_rgba[:, :3] = np.clip(model.geom_rgba[:, :3] * COLOUR_TINT, 0, 1)
        elif shift == "placement":
            self._env._get_state_rand_vec = self._outside_rand_vec
            # The goal space only bounds the observation: unbounded, a goal placed past it is observed, not clipped.
            self._env.goal_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        # MetaWorld clips every step observation to ``sawyer_observation_space``, a cached property computed at
        # construction, while the goal was still hidden (goal bounds zero): without recomputing it the goal reads
        # [0, 0, 0] after the first step and goal-seeking experts drive to the origin. MetaWorld's own
        # observability switches (``set_task``, its goal-observable classes) delete it the same way.
        del self._env.sawyer_observation_space
        self._size = size
        self._state = np.zeros(39)
        self._steps = 0
        self._contacts = ContactGeoms(model)
        self._trace: EpisodeTrace | None = None

        spaces: dict[str, gym.Space] = {}
        if track == "vision":
            spaces[IMAGE_KEY] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
            spaces[STATE_KEY] = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        else:
            spaces[STATE_KEY] = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def _outside_rand_vec(self) -> np.ndarray:
        """MetaWorld's placement vector, drawn outside its training box on every axis that varies."""
        space, rng = self._env._random_reset_space, self._env.np_random
        low, high = space.low, space.high
        width = high - low
        past = rng.uniform(0, PLACEMENT_MARGIN, size=low.size) * width
        above = rng.random(low.size) < 0.5
        vec = np.where(above, high + past, low - past)
        self._env._last_rand_vec = vec
        return vec

    @property
    def control_hz(self) -> float:
        """The environment's control rate: one action per ``frame_skip`` physics steps."""
        return 1.0 / self._env.dt

    @property
    def privileged_state(self) -> np.ndarray:
        """The 39-d MetaWorld state; the scripted experts read it, vision-track policies never do."""
        return self._state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        self._state, _ = self._env.reset()
        self._steps = 0
        self._trace = EpisodeTrace(self._keypoints_xyz(), self.task in HAND_GOAL_TASKS)
        return self._observation(image=True), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self._state, reward, _, _, info = self._env.step(action)
        self._steps += 1
        success = bool(info.get("success", 0.0))
        truncated = self._steps >= self.max_episode_steps or self._steps >= self._env.max_path_length
        self._trace.update(self._keypoints_xyz(), *self._contacts.touching(self._env.data))
        step_info: dict[str, Any] = {"is_success": success}
        if truncated and not success:
            step_info["failure"] = self._trace.failure()
        return self._observation(self.render_images), float(reward), success, truncated, step_info

    def render(self) -> np.ndarray:
        """The camera frame, upright, at ``render_size`` (the observation size by default)."""
        return np.ascontiguousarray(self._env.render()[::-1, ::-1])

    def _observation(self, image: bool) -> dict[str, np.ndarray]:
        if self.track == "state":
            return {STATE_KEY: self._state.astype(np.float32)}
        if not image:
            return {STATE_KEY: self._state[:4].astype(np.float32)}
        image = self.render()
        if self._size != self.image_size:
            raise RuntimeError("observation rendering needs render_size == image_size")
        return {IMAGE_KEY: image, STATE_KEY: self._state[:4].astype(np.float32)}

    def ground_truth(self) -> dict[str, np.ndarray]:
        """3-D positions (world frame, metres) of end effector, key object and goal, and their image projections.

        ``keypoints_uv`` holds pixel coordinates (u to the right, v down) in the upright observation image;
        points behind the camera come out as NaN.
        """
        xyz = self._keypoints_xyz()
        return {"keypoints_xyz": xyz.astype(np.float32), "keypoints_uv": self.project(xyz).astype(np.float32)}

    def _keypoints_xyz(self) -> np.ndarray:
        env = self._env
        return np.stack([np.asarray(env.tcp_center, dtype=np.float64),
                         np.asarray(env._get_pos_objects()[:3], dtype=np.float64),
                         np.asarray(env._target_pos, dtype=np.float64)])

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pinhole projection of world points ``[N, 3]`` into upright image pixels ``[N, 2]``."""
        data, model = self._env.data, self._env.model
        cam_pos = data.cam_xpos[self._cam_id]
        cam_rot = data.cam_xmat[self._cam_id].reshape(3, 3)
        local = (points - cam_pos) @ cam_rot  # camera frame: x right, y up, looking along -z
        focal = 0.5 * self.image_size / np.tan(np.deg2rad(model.cam_fovy[self._cam_id]) / 2)
        depth = -local[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = focal * local[:, 0] / depth + self.image_size / 2
            v = -focal * local[:, 1] / depth + self.image_size / 2
        uv = np.stack([u, v], axis=-1)
        uv[depth <= 0] = np.nan
        # MuJoCo's frame for this camera is rotated 180 degrees; the observation is turned upright.
        return self.image_size - uv

    def close(self) -> None:
        # Free the EGL context now: left to the garbage collector it fails noisily at interpreter exit.
        renderer = getattr(self._env, "mujoco_renderer", None)
        if renderer is not None:
            renderer.close()
        super().close()


class ContactGeoms:
    """Which MuJoCo geoms are the hand, its two finger pads, and the task's objects (every body that is neither
    the robot, the mocap target, the table nor the world), to read contacts between them."""

    SCENE = ("world", "tablelink", "RetainingWall", "mocap")
    """Bodies that are scenery, not task objects (the retaining wall exists in some tasks only)."""

    def __init__(self, model: Any):
        def subtree(root: str) -> np.ndarray:
            inside = np.zeros(model.nbody, bool)
            inside[model.body(root).id] = True
            for body in range(model.nbody):  # parents precede their children in MuJoCo's body order
                inside[body] |= inside[model.body_parentid[body]] and body != 0
            return inside[model.geom_bodyid]

        robot = subtree("base")
        names = {model.body(body).name for body in range(model.nbody)}
        scene = np.isin(model.geom_bodyid, [model.body(name).id for name in self.SCENE if name in names])
        self.hand, self.pads = subtree("right_hand"), (subtree("leftpad"), subtree("rightpad"))
        self.task_bodies = np.where(~robot & ~scene, model.geom_bodyid, -1)

    def touching(self, data: Any) -> tuple[bool, bool]:
        """Whether the hand touches a task object now, and whether both finger pads touch the same one."""
        first, second = data.contact.geom1[:data.ncon], data.contact.geom2[:data.ncon]

        def touched_by(part: np.ndarray) -> set[int]:
            """The task bodies in contact with a geom of ``part``."""
            return (set(self.task_bodies[second[part[first]]]) | set(self.task_bodies[first[part[second]]])) - {-1}

        return bool(touched_by(self.hand)), bool(touched_by(self.pads[0]) & touched_by(self.pads[1]))


class EpisodeTrace:
    """What a MetaWorld episode did, from simulator ground truth, to name its failure (``FAILURE_TAGS``)."""

    def __init__(self, start: np.ndarray, hand_goal: bool):
        self.start, self.end = start, start  # rows: hand, key object, goal
        self.hand_goal = hand_goal
        self.mover = 0 if hand_goal else 1  # the row that must reach the goal
        self.touched = self.held = self.held_now = False
        self.moved = 0.0

    def update(self, keypoints: np.ndarray, touching: bool, held: bool) -> None:
        self.end = keypoints
        self.touched |= touching
        self.held |= held
        self.held_now = held
        self.moved = max(self.moved, float(np.linalg.norm(keypoints[self.mover] - self.start[self.mover])))

    def failure(self) -> str:
        if not (self.touched or self.hand_goal):
            return "never-reached"
        if self.moved < MOVED:
            return "no-effect"
        if np.linalg.norm(self.end[self.mover] - self.end[2]) <= NEAR_GOAL:
            return "stalled-near-goal"
        if self.held and not self.held_now:
            return "grasp-lost"
        return "misplaced"


class ScriptedExpert:
    """MetaWorld's hand-written expert for a task, behind the policy interface ``reset`` / ``select_action``.

    The expert reads the privileged 39-d state of the environment it is bound to, so it works on both tracks.
    """

    def __init__(self, env: MetaWorldEnv):
        from metaworld.policies import ENV_POLICY_MAP

        self.env = env
        self._policy = ENV_POLICY_MAP[env.task]()

    def reset(self) -> None:
        pass

    def select_action(self, observation: dict[str, Any] | None = None) -> np.ndarray:
        return np.asarray(self._policy.get_action(self.env.privileged_state), dtype=np.float32)


def reference_expert_successes(task: str, starts: int, max_steps: int = MAX_EPISODE_STEPS) -> list[bool]:
    """Whether the scripted expert succeeds from each of ``starts`` starts of MetaWorld's own environment,
    ``gym.make("Meta-World/MT1", env_name=task, seed=0)``, which draws each reset's placement from its own seeded
    set of 50: the yardstick this adapter must match."""
    import metaworld  # noqa: F401  (registers the Meta-World/ environments)
    from metaworld.policies import ENV_POLICY_MAP

    MetaWorldSuite().check_tasks([task])
    env = gym.make("Meta-World/MT1", env_name=task, seed=0, max_episode_steps=max_steps)
    policy = ENV_POLICY_MAP[task]()
    outcomes = []
    try:
        for _ in range(starts):
            observation, _ = env.reset()
            success = done = False
            while not (success or done):
                observation, _, terminated, truncated, info = env.step(policy.get_action(observation))
                success, done = bool(info["success"]), terminated or truncated
            outcomes.append(success)
    finally:
        env.close()
    return outcomes


GOAL_MOVES = 0.02  # m: a goal whose placement varies by less between seeds is as good as fixed
GOAL_PROBE_SEEDS = ((0, 1), (2, 3), (4, 5))


@cache
def goal_hidden(task: str) -> bool:
    """Whether ``task``'s goal moves between seeded resets (by ``GOAL_MOVES`` or more) while no task body moves
    with it: MetaWorld draws no goal marker in the camera image, so only a body placed with the goal (a shelf, a
    basket, a button box) shows it. Measured on ``GOAL_PROBE_SEEDS``; hidden if any pair says so."""
    import mujoco

    env = MetaWorldEnv(task, track="state")
    sawyer = env._env
    bodies = sorted({int(b) for b in ContactGeoms(sawyer.model).task_bodies if b >= 0})

    def placement(seed: int) -> tuple[np.ndarray, np.ndarray]:
        env.reset(seed=seed)
        mujoco.mj_kinematics(sawyer.model, sawyer.data)
        return np.array(sawyer._target_pos, dtype=np.float64), sawyer.data.xpos[bodies].copy()

    try:
        for first, second in GOAL_PROBE_SEEDS:
            (goal0, bodies0), (goal1, bodies1) = placement(first), placement(second)
            moved = goal1 - goal0
            carried = np.linalg.norm((bodies1 - bodies0) - moved, axis=1) < 0.005
            if np.linalg.norm(moved) >= GOAL_MOVES and not carried.any():
                return True
        return False
    finally:
        env.close()


class LeRobotViewEnv(MetaWorldEnv):
    """MetaWorld as LeRobot's environment shows it (``lerobot/envs/metaworld.py``): the ``corner2`` camera moved to
    (0.75, 0.075, 0.7), closer to the table, as published MetaWorld results under LeRobot's protocol were rendered.
    Placement is randomized at every reset and the policy sees the image and the 4-d hand state, as ours does."""

    camera_position = np.array([0.75, 0.075, 0.7])


class MocapPropagator:
    """The hand's kinematics for the dream: MetaWorld moves its mocap target by ``clip(a[:3]) * ACTION_SCALE``
    (clipped to the task's mocap bounds) and the hand follows it; the gripper opening stays as it was."""

    dims, unit = 3, "m"

    def __init__(self, env: MetaWorldEnv):
        sawyer = env._env  # MetaWorld's SawyerXYZEnv: the real action scale and mocap bounds
        self.action_scale = float(sawyer.action_scale)
        self._low, self._high = np.asarray(sawyer.mocap_low), np.asarray(sawyer.mocap_high)
        self._target = np.zeros(3)  # the mocap target the hand is dragged toward

    def reset(self, observation: dict[str, np.ndarray]) -> None:
        self._target = observation[STATE_KEY][:3].astype(np.float64)

    def step(self, state: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        state = state.astype(np.float64)
        for action in np.clip(chunk, -1.0, 1.0):
            self._target = np.clip(self._target + action[:3] * self.action_scale, self._low, self._high)
            state[:3] += HAND_GAIN * (self._target - state[:3])
        return state.astype(np.float32)


class MetaWorldSuite(Suite):
    """MetaWorld v3's 50 Sawyer tasks: vision track (64x64 ``corner2`` image, hand xyz and gripper) or the 39-d
    state; actions are hand displacement and gripper effort in [-1, 1]; success as MetaWorld defines it per task."""

    name = "metaworld"
    env_class = MetaWorldEnv
    expert_class = ScriptedExpert
    control_hz = CONTROL_HZ
    max_episode_steps = MAX_EPISODE_STEPS
    default_image_size = 64
    robot_type = "sawyer"
    image_key = IMAGE_KEY
    state_key = STATE_KEY
    keypoint_names = ("ee", "object", "goal")
    shifts = SHIFTS
    score = "MetaWorld's shaped reward (0 to 10)"
    failure_tags = FAILURE_TAGS

    def tasks(self) -> list[str]:
        return task_names()

    def groups(self) -> dict[str, list[str]]:
        return {"all": self.tasks(), "wam-bench": list(WAM_BENCH), "quick": ["button-press-topdown-v3", "drawer-close-v3"],
                "quickstart": ["button-press-topdown-v3", "drawer-open-v3", "drawer-close-v3"],
                **{name: [f"{t}-v3" for t in tasks] for name, tasks in DIFFICULTY.items()}}

    def goal_hidden(self, task: str) -> bool:
        return goal_hidden(task)

    def instruction(self, task: str) -> str:
        """The task's name without its version: ``drawer-open-v3`` -> ``drawer open``."""
        return " ".join(w for w in task.split("-") if not (w.startswith("v") and w[1:].isdigit()))

    def observation_features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        if track == "state":
            return {STATE_KEY: {"dtype": "float32", "shape": [39], "names": None}}
        return {IMAGE_KEY: {"dtype": "image", "shape": [image_size, image_size, 3],
                            "names": ["height", "width", "channels"]},
                STATE_KEY: {"dtype": "float32", "shape": [4], "names": ["hand_x", "hand_y", "hand_z", "gripper"]}}

    def action_feature(self) -> dict[str, Any]:
        return {"dtype": "float32", "shape": [4], "names": ["dx", "dy", "dz", "gripper"]}

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return -np.ones(4, np.float32), np.ones(4, np.float32)

    def state_propagator(self, env: MetaWorldEnv) -> StatePropagator:
        return MocapPropagator(env)

    def teleop_action(self, state: np.ndarray, command: np.ndarray) -> np.ndarray:
        """The hand displacement and gripper effort, as given (MetaWorld's actions are already relative)."""
        return np.clip(command, -1.0, 1.0).astype(np.float32)

    def executable(self, states: np.ndarray, chunks: np.ndarray) -> np.ndarray:
        """Every action in [-1, 1], and the hand, integrated kinematically from its current position, inside
        MetaWorld's mocap workspace."""
        path = states[:, None, :3] + ACTION_SCALE * np.cumsum(np.clip(chunks[..., :3], -1, 1), axis=1)
        in_workspace = ((path >= MOCAP_LOW - 1e-6) & (path <= MOCAP_HIGH + 1e-6)).all(-1)
        return super().executable(states, chunks) & in_workspace



class MetaWorldLeRobotSuite(MetaWorldSuite):
    """MetaWorld under LeRobot's camera placement (``LeRobotViewEnv``); everything else is ``MetaWorldSuite``'s.
    Datasets and models record the suite, so a model trained on this view is evaluated on it."""

    name = "metaworld-lerobot"
    env_class = LeRobotViewEnv
