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

import colorsys
import os
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from wam.envs.base import StatePropagator, Suite, Track, image_feature
from wam.envs.variation import Factor, Shift, random_direction

os.environ.setdefault("MUJOCO_GL", "egl")
import mujoco  # noqa: E402  (after choosing its OpenGL backend)

CAMERA = "corner2"
IMAGE_KEY = f"observation.images.{CAMERA}"
WRIST_CAMERA = "gripperPOV"  # MetaWorld's camera on the hand, looking past the fingers
WRIST_KEY = f"observation.images.{WRIST_CAMERA}"
STATE_KEY = "observation.state"
CONTROL_HZ = 80.0  # MetaWorld: one action per 5 physics steps of 2.5 ms
MAX_EPISODE_STEPS = 500  # MetaWorld's own ``max_path_length``
ACTION_SCALE = 0.01  # the mocap target moves by action * 1 cm per control step in all 50 v3 tasks
MOCAP_LOW, MOCAP_HIGH = np.array([-0.5, 0.4, 0.05]), np.array([0.5, 1.0, 0.5])
HAND_GAIN = 0.2
"""Fraction of the gap to the mocap target the hand closes per control step (fitted on 4 tasks x 3 seeds)."""

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
GENERALIZATION = ("button-press-topdown-v3", "drawer-open-v3", "door-open-v3", "window-open-v3",
                  "coffee-push-v3", "coffee-pull-v3", "push-v3", "stick-push-v3")
"""The tasks of the generalization benchmark (``wam bench --protocol generalization``): four articulated tasks of
WAM-Bench, and four whose key object lies loose on the table, so that every factor, displacement included, shifts
at least four of them."""
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
CAMERA_LEVELS = {"weak": (0.02, 2.0), "medium": (0.05, 5.0), "strong": (0.10, 10.0)}
"""Camera pose: metres the camera moves and degrees it turns, each in a direction drawn per episode."""
LIGHTING_LEVELS = {"weak": (15.0, 0.25), "medium": (30.0, 0.5), "strong": (60.0, 0.75)}
"""Lighting: degrees the lights turn together about a drawn axis, and the fraction by which every light's intensity
(the lights' diffuse, the headlight's diffuse and ambient) rises or falls, which way drawn per episode."""
COLOUR_LEVELS = {"weak": (0.1, False), "medium": (0.25, True), "strong": (0.5, True)}
"""Colours: the strength of each part's tint (each RGB channel scaled by 1 + strength * U(-1, 1)), and whether
the table's wood texture is swapped for another texture of the scene (metal or a block's wood)."""
DISTRACTOR_LEVELS = {"weak": 1, "medium": 3, "strong": 6}
"""Distractors: how many objects stand on the table."""
PLACEMENT_LEVELS = {"weak": 0.1, "medium": 0.25, "strong": 0.5}
"""Placement: how far past MetaWorld's training range object and goal are placed, as a fraction of its width."""
DISPLACEMENT_LEVELS = {"weak": 0.02, "medium": 0.05, "strong": 0.10}
"""Displacement: metres the key object jumps sideways, once, mid-episode."""
DISPLACEMENT_STEPS = (10, 30)
"""The control step of the jump is drawn in this range: after the policy has started toward the object, before
the scripted experts reach it (they take 30 to 60 steps to grasp)."""
TABLE_AREA = (np.array([-0.4, 0.35]), np.array([0.4, 0.85]))
"""Where distractors may stand (x, y in metres on the table top), if the camera sees them there."""
DISTRACTOR_CLEARANCE = 0.1
"""Distractors stand at least this far (m, on the table plane) from the hand, the key object and the goal."""
DISTRACTOR_SIZE = (0.03, 0.05)
PLACEMENT_TRIES = 10_000
"""Draws tried for the distractors' places before a scene counts as having no room for them (an error)."""
"""The half-size range of a distractor (m): about the size of the tasks' pucks, mugs and blocks."""
FACTORS = {
    "camera": Factor("camera", "the camera's pose: moved and turned in a direction drawn per episode",
                     {k: f"moved {m * 100:g} cm and turned {d:g} degrees" for k, (m, d) in CAMERA_LEVELS.items()}),
    "lighting": Factor("lighting", "the lights' direction and intensity",
                       {k: f"turned {d:g} degrees, intensity x{1 - f:g} or x{1 + f:g}"
                        for k, (d, f) in LIGHTING_LEVELS.items()}),
    "colour": Factor("colour", "the colours and textures of the table, the floor and walls, the robot and the "
                     "objects: each part tinted by its own drawn colour",
                     {k: f"tint strength {t:g}" + (", the table's texture swapped" if swap else "")
                      for k, (t, swap) in COLOUR_LEVELS.items()}),
    "distractors": Factor("distractors", "objects of drawn shape, size and colour standing on the table, away from "
                          "the hand, the key object and the goal (seen, not felt: they have no collision)",
                          {k: f"{n} object{'s' if n > 1 else ''}" for k, n in DISTRACTOR_LEVELS.items()}),
    "placement": Factor("placement", "object and goal placed outside the training range: every axis MetaWorld "
                        "randomizes is pushed past its range on a random side",
                        {k: f"by up to {f:g} of the range's width" for k, f in PLACEMENT_LEVELS.items()}),
    "displacement": Factor("displacement", "the key object jumps sideways once, between control steps "
                           f"{DISPLACEMENT_STEPS[0]} and {DISPLACEMENT_STEPS[1]}, and the arm must follow it (tasks "
                           "whose key object lies loose on the table: MetaWorldSuite.factor_applies)",
                           {k: f"{m * 100:g} cm" for k, m in DISPLACEMENT_LEVELS.items()}),
}
"""The factors of variation of the MetaWorld suite (``wam.envs.variation``), applied by ``SceneVariation``."""


def task_names() -> list[str]:
    """The 50 MetaWorld v3 task names, e.g. ``drawer-open-v3``."""
    import metaworld

    return list(metaworld.ALL_V3_ENVIRONMENTS)


class MetaWorldEnv(gym.Env):
    """One MetaWorld v3 task; every ``reset(seed=s)`` draws a fresh, reproducible object and goal placement."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}
    camera_position: np.ndarray | None = None
    """Where the ``corner2`` camera sits; None: where MetaWorld's scene puts it."""
    wrist_camera: str | None = None
    """A second camera, carried by the hand, whose image the vision track adds; None: ``corner2`` alone."""

    def __init__(self, task: str, track: Track = "vision", image_size: int = 64,
                 max_episode_steps: int = MAX_EPISODE_STEPS, render_size: int | None = None, shift: str = "none"):
        import metaworld

        MetaWorldSuite().check_tasks([task])
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
        self._wrist_id = None if self.wrist_camera is None else model.camera(self.wrist_camera).id
        if self.camera_position is not None:
            model.cam_pos[self._cam_id] = self.camera_position
        suite = MetaWorldSuite()
        self.shift = suite.parse_shift(shift)
        if self.shift["displacement"] is not None and not suite.factor_applies("displacement", task):
            raise ValueError(f"{task} has no loose key object to displace: the displacement factor applies only to "
                             "tasks whose key object lies loose on the table (docs/generalization.md)")
        if self.shift["placement"] is not None:
            self._env._get_state_rand_vec = self._outside_rand_vec
            # The goal space only bounds the observation: unbounded, a goal placed past it is observed, not clipped.
            self._env.goal_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
        self.variation = SceneVariation(self, self.shift)
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
            if self._wrist_id is not None:
                spaces[WRIST_KEY] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
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
        past = rng.uniform(0, self.variation.placement_margin, size=low.size) * width
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
        self.variation.before_reset(seed)
        self._state, _ = self._env.reset()
        # MetaWorld's reset places the goal marker (the ``goal`` site) after its last forward pass, so the first
        # frame would draw the marker where it stood before the reset; recompute positions (kinematics only: the
        # next physics step stays bit for bit what it was) before anything reads them.
        mujoco.mj_kinematics(self._env.model, self._env.data)
        self._steps = 0
        self._trace = EpisodeTrace(self._keypoints_xyz(), self.task in HAND_GOAL_TASKS)
        self.variation.after_reset(seed)
        return self._observation(image=True), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.variation.before_step(self._steps)
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
        self.variation.before_render()
        return np.ascontiguousarray(self._env.render()[::-1, ::-1])

    def render_wrist(self) -> np.ndarray:
        """The hand camera's frame (the same scene: the factors of variation and distractors show in it too; the
        camera factor moves ``corner2`` only, since this camera rides on the hand)."""
        self.variation.before_render()
        viewer = self._env.mujoco_renderer._get_viewer("rgb_array")
        return np.ascontiguousarray(viewer.render("rgb_array", camera_id=self._wrist_id))

    def _observation(self, image: bool) -> dict[str, np.ndarray]:
        if self.track == "state":
            return {STATE_KEY: self._state.astype(np.float32)}
        if not image:
            return {STATE_KEY: self._state[:4].astype(np.float32)}
        image = self.render()
        if self._size != self.image_size:
            raise RuntimeError("observation rendering needs render_size == image_size")
        wrist = {} if self._wrist_id is None else {WRIST_KEY: self.render_wrist()}
        return {IMAGE_KEY: image, **wrist, STATE_KEY: self._state[:4].astype(np.float32)}

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


class SceneVariation:
    """A ``Shift`` of the MetaWorld suite's ``FACTORS`` applied to one environment: the model's camera, lights,
    colours and textures are restored and redrawn before every reset, distractors placed and the displacement
    planned after it, and the key object moved when its step comes (``MetaWorldEnv`` calls these hooks)."""

    def __init__(self, env: MetaWorldEnv, shift: Shift):
        self.env, self.shift = env, shift
        model = env._env.model
        cam = env._cam_id
        self._camera = model.cam_pos[cam].copy(), model.cam_quat[cam].copy()
        headlight = model.vis.headlight
        self._lights = (model.light_dir.copy(), model.light_diffuse.copy(), headlight.diffuse.copy(),
                        headlight.ambient.copy())
        self._colours = model.geom_rgba.copy(), model.mat_rgba.copy(), model.mat_texid.copy()
        self._parts = self._colour_parts(model)
        self.placement_margin = 0.0
        self._displace_at: int | None = None
        self._displace_by = np.zeros(3)
        self._distractors: list[dict[str, Any]] = []

    @staticmethod
    def _colour_parts(model: Any) -> np.ndarray:
        """Per geom, the part whose tint it takes: 0 floor and walls, 1 table, 2 robot, 3 objects."""
        robot = ContactGeoms.subtree(model, "base")
        body_names = [model.body(b).name for b in model.geom_bodyid]
        parts = np.full(model.ngeom, 3)
        parts[[name in ("world", "RetainingWall") for name in body_names]] = 0
        parts[[name == "tablelink" for name in body_names]] = 1
        parts[robot] = 2
        return parts

    def before_reset(self, seed: int | None) -> None:
        """Restore the scene, then draw this episode's camera, lights, colours and placement margin."""
        env, shift = self.env, self.shift
        model = env._env.model
        cam = env._cam_id
        model.cam_pos[cam], model.cam_quat[cam] = self._camera
        headlight = model.vis.headlight
        model.light_dir[:], model.light_diffuse[:], headlight.diffuse[:], headlight.ambient[:] = self._lights
        model.geom_rgba[:], model.mat_rgba[:], model.mat_texid[:] = self._colours
        for setting in shift.settings:
            rng = shift.rng(setting.factor, seed)
            scale = setting.scale(rng)
            if setting.factor == "camera":
                metres, degrees = CAMERA_LEVELS[setting.level]
                model.cam_pos[cam] = self._camera[0] + scale * metres * random_direction(rng)
                model.cam_quat[cam] = _turned(self._camera[1], random_direction(rng), scale * degrees)
            elif setting.factor == "lighting":
                degrees, fraction = LIGHTING_LEVELS[setting.level]
                turn = _rotation(random_direction(rng), scale * degrees)
                gain = 1 + scale * fraction * rng.choice([-1.0, 1.0])
                model.light_dir[:] = self._lights[0] @ turn.T
                model.light_diffuse[:] = np.clip(self._lights[1] * gain, 0, 1)
                headlight.diffuse[:] = np.clip(self._lights[2] * gain, 0, 1)
                headlight.ambient[:] = np.clip(self._lights[3] * gain, 0, 1)
            elif setting.factor == "colour":
                self._tint(model, rng, scale, setting.level)
            elif setting.factor == "placement":
                self.placement_margin = scale * PLACEMENT_LEVELS[setting.level]
            elif setting.factor == "displacement":
                self._displace_at = int(rng.integers(DISPLACEMENT_STEPS[0], DISPLACEMENT_STEPS[1] + 1))
                self._displace_by = scale * DISPLACEMENT_LEVELS[setting.level] * np.append(
                    random_direction(rng, 2), 0.0)

    def _tint(self, model: Any, rng: np.random.Generator, scale: float, level: str) -> None:
        strength, swap = COLOUR_LEVELS[level]
        tints = 1 + scale * strength * rng.uniform(-1, 1, size=(4, 3))  # per part, per channel
        # A geom with a material shows the material's colour only while its own rgba keeps MuJoCo's default, so
        # those are tinted through their material.
        plain = model.geom_matid < 0
        model.geom_rgba[plain, :3] = np.clip(self._colours[0][plain, :3] * tints[self._parts[plain]], 0, 1)
        for mat in range(model.nmat):  # a material takes the tint of the first part that uses it
            users = np.flatnonzero(model.geom_matid == mat)
            if users.size:
                model.mat_rgba[mat, :3] = np.clip(self._colours[1][mat, :3] * tints[self._parts[users[0]]], 0, 1)
        if swap and scale > 0:  # the table's texture for another texture of the scene of the same kind
            rgb = int(mujoco.mjtTextureRole.mjTEXROLE_RGB)
            table = model.material("table_wood").id
            own = self._colours[2][table, rgb]
            others = [t for t in range(model.ntex) if t != own and model.tex_type[t] == model.tex_type[own]]
            model.mat_texid[table, rgb] = others[rng.integers(len(others))]

    def after_reset(self, seed: int | None) -> None:
        """Draw this episode's distractors on the table, clear of the hand, the key object and the goal."""
        self._distractors = []
        setting = self.shift["distractors"]
        if setting is None:
            return
        rng = self.shift.rng("distractors", seed)
        count = round(setting.scale(rng) * DISTRACTOR_LEVELS[setting.level])
        keep_clear = self.env._keypoints_xyz()[:, :2]
        shapes = (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_SPHERE, mujoco.mjtGeom.mjGEOM_CYLINDER)
        margin = 0.1 * self.env.image_size
        for _ in range(PLACEMENT_TRIES):
            if len(self._distractors) == count:
                return
            xy = rng.uniform(*TABLE_AREA)
            size = rng.uniform(*DISTRACTOR_SIZE)
            shape = shapes[rng.integers(len(shapes))]
            height = 1.5 * size if shape == mujoco.mjtGeom.mjGEOM_CYLINDER else size
            pixel = self.env.project(np.array([[*xy, height]]))[0]
            if (np.linalg.norm(keep_clear - xy, axis=1).min() < DISTRACTOR_CLEARANCE
                    or not ((pixel > margin) & (pixel < self.env.image_size - margin)).all()):
                continue  # on something the task needs, or where the (possibly moved) camera does not see it
            keep_clear = np.vstack([keep_clear, xy])
            self._distractors.append({"type": shape, "pos": np.array([*xy, height]),
                                      "size": np.array([size, size, height]),
                                      "rgba": np.array([*colorsys.hsv_to_rgb(*rng.uniform([0, 0.6, 0.7], 1)), 1],
                                                       np.float32)})  # vivid: a muted one vanishes into the wood
        if len(self._distractors) < count:
            raise RuntimeError(f"{self.env.task}: no place on the table for {count} distractors in view of the camera")

    def before_render(self) -> None:
        """Put the distractors into the scene about to be rendered (gymnasium's viewer drops its markers after
        every frame)."""
        if self._distractors:
            viewer = self.env._env.mujoco_renderer._get_viewer("rgb_array")
            for distractor in self._distractors:
                viewer.add_marker(**distractor)

    def before_step(self, step: int) -> None:
        """At the planned step, move the key object (a loose body) sideways and let the trace start from there."""
        if step != self._displace_at:
            return
        sawyer = self.env._env
        model, data = sawyer.model, sawyer.data
        body = loose_key_body(self.env.task)
        joint = model.body_jntadr[body]
        qpos, dof = model.jnt_qposadr[joint], model.jnt_dofadr[joint]
        data.qpos[qpos:qpos + 3] += self._displace_by
        data.qvel[dof:dof + 6] = 0.0
        mujoco.mj_forward(model, data)
        self.env._trace.start = self.env._keypoints_xyz()


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """The 3x3 rotation by ``degrees`` about the unit ``axis``."""
    quat, matrix = np.zeros(4), np.zeros(9)
    mujoco.mju_axisAngle2Quat(quat, axis, np.deg2rad(degrees))
    mujoco.mju_quat2Mat(matrix, quat)
    return matrix.reshape(3, 3)


def _turned(quat: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """The orientation ``quat`` turned by ``degrees`` about ``axis`` of its own frame."""
    turn, result = np.zeros(4), np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, axis, np.deg2rad(degrees))
    mujoco.mju_mulQuat(result, quat, turn)
    return result


LOOSE_REACH = 0.15
"""m: a free body counts as the key object when the task's key point lies this close to it (a nut's handle, a
peg's head)."""


@cache
def loose_key_body(task: str) -> int | None:
    """The body id of ``task``'s key object if it lies loose on the table (a free joint, touching nothing but the
    table at the start of seed 0), else None: only such an object can be displaced mid-episode. Hand-goal tasks
    have no key object."""
    if task in HAND_GOAL_TASKS:
        return None
    env = MetaWorldEnv(task, track="state")
    try:
        env.reset(seed=0)
        model, data = env._env.model, env._env.data
        key = env._keypoints_xyz()[1]
        free = [model.jnt_bodyid[j] for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        if not free:
            return None
        body = min(free, key=lambda b: np.linalg.norm(data.xpos[b] - key))
        if np.linalg.norm(data.xpos[body] - key) > LOOSE_REACH:
            return None
        table = {model.body(name).id for name in ("world", "tablelink")}
        geom_body = model.geom_bodyid
        for first, second in zip(data.contact.geom1[:data.ncon], data.contact.geom2[:data.ncon], strict=True):
            pair = {int(geom_body[first]), int(geom_body[second])}
            if body in pair and not (pair - {body}) <= table:
                return None
        return int(body)
    finally:
        env.close()


class ContactGeoms:
    """Which MuJoCo geoms are the hand, its two finger pads, and the task's objects (every body that is neither
    the robot, the mocap target, the table nor the world), to read contacts between them."""

    SCENE = ("world", "tablelink", "RetainingWall", "mocap")
    """Bodies that are scenery, not task objects (the retaining wall exists in some tasks only)."""

    def __init__(self, model: Any):
        robot = self.subtree(model, "base")
        names = {model.body(body).name for body in range(model.nbody)}
        scene = np.isin(model.geom_bodyid, [model.body(name).id for name in self.SCENE if name in names])
        self.hand = self.subtree(model, "right_hand")
        self.pads = self.subtree(model, "leftpad"), self.subtree(model, "rightpad")
        self.task_bodies = np.where(~robot & ~scene, model.geom_bodyid, -1)

    @staticmethod
    def subtree(model: Any, root: str) -> np.ndarray:
        """Per geom, whether its body is ``root`` or one of its descendants."""
        inside = np.zeros(model.nbody, bool)
        inside[model.body(root).id] = True
        for body in range(model.nbody):  # parents precede their children in MuJoCo's body order
            inside[body] |= inside[model.body_parentid[body]] and body != 0
        return inside[model.geom_bodyid]

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
GOAL_SITE = "goal"  # MetaWorld's goal marker: a small sphere drawn where the goal is
MARKER_CHANGE = 25  # of 255: a pixel the marker changes by less in every channel does not show it


@cache
def free_goal(task: str) -> bool:
    """Whether ``task``'s goal moves between seeded resets (by ``GOAL_MOVES`` or more) while no task body moves with
    it (no shelf, basket or button box placed with it), so that the camera image can show it only through
    MetaWorld's goal marker. Measured on ``GOAL_PROBE_SEEDS``; free if any pair says so."""
    env = MetaWorldEnv(task, track="state")
    sawyer = env._env
    bodies = sorted({int(b) for b in ContactGeoms(sawyer.model).task_bodies if b >= 0})

    def placement(seed: int) -> tuple[np.ndarray, np.ndarray]:
        env.reset(seed=seed)
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


@cache
def goal_marker_pixels(task: str, image_size: int) -> int:
    """How many pixels of ``task``'s first camera frame at ``image_size`` MetaWorld's goal marker covers where the
    goal is: the median over the ``GOAL_PROBE_SEEDS`` starts of the pixels that change by ``MARKER_CHANGE`` or more
    when the marker is made transparent. 0 where something hides it, and for the tasks whose model has no marker or
    leaves it away from the goal (coffee-pull, sweep)."""
    env = MetaWorldEnv(task, track="vision", image_size=image_size)
    model, data = env._env.model, env._env.data
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, GOAL_SITE)
    try:
        if site < 0:
            return 0
        rgba = model.site_rgba[site].copy()
        counts = []
        for seed in sorted({s for pair in GOAL_PROBE_SEEDS for s in pair}):
            env.reset(seed=seed)
            if np.linalg.norm(data.site_xpos[site] - env._env._target_pos) > 1e-6:
                return 0
            shown = env.render().astype(np.int16)
            model.site_rgba[site, 3] = 0.0
            hidden = env.render().astype(np.int16)
            model.site_rgba[site] = rgba
            counts.append(int((np.abs(shown - hidden).max(axis=-1) >= MARKER_CHANGE).sum()))
        return int(np.median(counts))
    finally:
        env.close()


class LeRobotViewEnv(MetaWorldEnv):
    """MetaWorld as LeRobot's environment shows it (``lerobot/envs/metaworld.py``): the ``corner2`` camera moved to
    (0.75, 0.075, 0.7), closer to the table, as published MetaWorld results under LeRobot's protocol were rendered.
    Placement is randomized at every reset and the policy sees the image and the 4-d hand state, as ours does."""

    camera_position = np.array([0.75, 0.075, 0.7])


class WristCameraEnv(MetaWorldEnv):
    """MetaWorld with a second camera on the hand (``gripperPOV``) beside ``corner2``: the eye-in-hand view that
    moves with the arm, so a change of the fixed camera's pose leaves it as it was."""

    wrist_camera = WRIST_CAMERA


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
    factors = FACTORS
    score = "MetaWorld's shaped reward (0 to 10)"
    failure_tags = FAILURE_TAGS

    def tasks(self) -> list[str]:
        return task_names()

    def groups(self) -> dict[str, list[str]]:
        return {"all": self.tasks(), "wam-bench": list(WAM_BENCH), "quick": ["button-press-topdown-v3", "drawer-close-v3"],
                "quickstart": ["button-press-topdown-v3", "drawer-open-v3", "drawer-close-v3"],
                "generalization": list(GENERALIZATION),
                **{name: [f"{t}-v3" for t in tasks] for name, tasks in DIFFICULTY.items()}}

    def free_goal(self, task: str) -> bool:
        return free_goal(task)

    def goal_marker_pixels(self, task: str, image_size: int) -> int:
        return goal_marker_pixels(task, image_size)

    def factor_applies(self, factor: str, task: str) -> bool:
        """Every factor applies to every task but displacement, which needs a key object lying loose."""
        return super().factor_applies(factor, task) and (factor != "displacement" or loose_key_body(task) is not None)

    def instruction(self, task: str) -> str:
        """The task's name without its version: ``drawer-open-v3`` -> ``drawer open``."""
        return " ".join(w for w in task.split("-") if not (w.startswith("v") and w[1:].isdigit()))

    def observation_features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        if track == "state":
            return {STATE_KEY: {"dtype": "float32", "shape": [39], "names": None}}
        return {IMAGE_KEY: image_feature(image_size),
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


class MetaWorldWristSuite(MetaWorldSuite):
    """MetaWorld with a second, hand-mounted camera (``WristCameraEnv``): the vision track observes ``corner2``,
    ``gripperPOV`` and the hand state; everything else is ``MetaWorldSuite``'s (``corner2`` stays the image that
    pixel and feature substrates predict, videos show and dreams render)."""

    name = "metaworld-wrist"
    env_class = WristCameraEnv

    def observation_features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        features = super().observation_features(track, image_size)
        if track == "state":
            return features
        return {IMAGE_KEY: features[IMAGE_KEY], WRIST_KEY: image_feature(image_size), STATE_KEY: features[STATE_KEY]}
