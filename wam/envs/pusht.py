"""PushT (``gym-pusht``, the benchmark of Diffusion Policy and LeRobot) as a suite.

A circular pusher, driven by a PD controller toward the commanded position, pushes a T-shaped block into a fixed
goal pose on a 512 x 512 plane (pymunk physics, 10 Hz control, 300-step cap). Vision track: the 96x96 top-down
image and the 2-d pusher position, under LeRobot's keys (``observation.image``, ``observation.state``); state
track: the T's eight corners (``observation.environment_state``, 16-d) and the pusher position, the keypoint
observation of Diffusion Policy's low-dimensional PushT and of LeRobot's ``pusht_keypoints`` (the environment's
5-d pose state wraps the block angle at 2 pi, so nearby poses can lie far apart in it). The action is the pusher's target
position in pixels. Success is a coverage of the goal by the block above 0.95; the reward, whose per-episode
maximum Diffusion Policy and LeRobot report beside success, is ``min(coverage / 0.95, 1)``.

No demonstrations are downloaded: ``PushTExpert`` is a scripted expert over the true pymunk state.
"""

from __future__ import annotations

import colorsys
import os
from functools import cache
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from wam.envs.base import StatePropagator, Suite, Track, image_feature
from wam.envs.variation import Factor, Shift, random_direction

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame greets on import otherwise

TASK = "pusht"
IMAGE_KEY = "observation.image"
STATE_KEY = "observation.state"
KEYPOINTS_KEY = "observation.environment_state"
CONTROL_HZ = 10.0
MAX_EPISODE_STEPS = 300
WORLD = 512.0  # side of the plane in pixels; actions and positions live in [0, WORLD]
NEAR_COVERAGE = 0.8  # coverage of the goal that counts as near it (success needs 0.95)
FAILURE_TAGS = {
    "never-reached": "the block never moved (it is quasi-static: it moves only while the pusher pushes it), so the "
                     "pusher never reached it",
    "stalled-near-goal": f"the block ended covering at least {NEAR_COVERAGE:.0%} of the goal, short of 95 %",
    "lost-coverage": f"the block covered at least {NEAR_COVERAGE:.0%} of the goal at some step but ended below it "
                     "(pushed past or away)",
    "misplaced": f"the block was moved but never covered {NEAR_COVERAGE:.0%} of the goal",
}
"""The failure tags of the PushT suite, tested in this order; the first that holds names a failed episode."""
TELEOP_PX = 30.0  # how far ahead of the pusher one key press puts its target (``wam play``)
CAMERA_LEVELS = {"weak": (10.0, 2.0, 0.02), "medium": (25.0, 5.0, 0.05), "strong": (50.0, 10.0, 0.1)}
"""Camera pose of the top-down view: pixels (of 512) it moves, degrees it turns and the fraction it zooms in or
out, each in a direction drawn per episode."""
LIGHTING_LEVELS = {"weak": 0.15, "medium": 0.3, "strong": 0.5}
"""Lighting: the fraction by which the image's intensity rises or falls overall, and across the image along a drawn
direction (a light from one side)."""
COLOUR_LEVELS = {"weak": 0.1, "medium": 0.25, "strong": 0.5}
"""Colours: the strength of each part's tint (each RGB channel scaled by 1 + strength * U(-1, 1))."""
DISTRACTOR_LEVELS = {"weak": 1, "medium": 3, "strong": 6}
"""Distractors: how many shapes are drawn on the plane."""
PLACEMENT_LEVELS = {"weak": (15.0, 10.0, 5.0), "medium": (30.0, 20.0, 10.0), "strong": (45.0, 40.0, 20.0)}
"""Placement: pixels the block's start lies past gym-pusht's range (100 to 400 on each axis), and pixels and
degrees the goal pose moves from its fixed place."""
DISPLACEMENT_LEVELS = {"weak": 10.0, "medium": 25.0, "strong": 50.0}
"""Displacement: pixels the block jumps, once, mid-episode."""
DISPLACEMENT_STEPS = (5, 15)
"""The control step of the jump is drawn in this range (the expert reaches the block within about 10 steps)."""
BLOCK_RANGE = (100.0, 400.0)
"""gym-pusht draws the block's start position in this range on each axis."""
INSIDE = (20.0, WORLD - 20.0)
"""Every corner of a placed or displaced block lies in this range (clear of the walls at 5 and 506)."""
FACTORS = {
    "camera": Factor("camera", "the top-down camera's pose: moved, turned and zoomed in a direction drawn per "
                     "episode (the image is warped as that camera sees the plane)",
                     {k: f"moved {px:g} px of 512, turned {d:g} degrees, zoomed x{1 - z:g} or x{1 + z:g}"
                      for k, (px, d, z) in CAMERA_LEVELS.items()}),
    "lighting": Factor("lighting", "the image's intensity raised or lowered overall and across the image from a "
                       "drawn side", {k: f"x{1 - f:g} to x{1 + f:g}" for k, f in LIGHTING_LEVELS.items()}),
    "colour": Factor("colour", "the colours of the plane, the goal, the block and the pusher, each tinted by its own "
                     "drawn colour (the goal's colour change is UVA's PushT shift)",
                     {k: f"tint strength {t:g}" for k, t in COLOUR_LEVELS.items()}),
    "distractors": Factor("distractors", "shapes of drawn kind, size and colour drawn on the plane, clear of the "
                          "block, the goal and the pusher (seen, not felt: they are not in the physics)",
                          {k: f"{n} shape{'s' if n > 1 else ''}" for k, n in DISTRACTOR_LEVELS.items()}),
    "placement": Factor("placement", "the block starts outside gym-pusht's range and the goal pose leaves its fixed "
                        "place", {k: f"block up to {b:g} px past its range, goal moved {g:g} px and turned {d:g} "
                                     "degrees" for k, (b, g, d) in PLACEMENT_LEVELS.items()}),
    "displacement": Factor("displacement", f"the block jumps once, at a control step between "
                           f"{DISPLACEMENT_STEPS[0]} and {DISPLACEMENT_STEPS[1]}, and the pusher must follow it",
                           {k: f"{px:g} px of 512" for k, px in DISPLACEMENT_LEVELS.items()}),
}
"""The factors of variation of the PushT suite (``wam.envs.variation``), applied by ``PlaneVariation``."""
BACKGROUND, GOAL_COLOUR = np.array([255.0, 255.0, 255.0]), np.array([144.0, 238.0, 144.0])  # gym-pusht: LightGreen
BLOCK_COLOUR, PUSHER_COLOUR = np.array([119.0, 136.0, 153.0]), np.array([65.0, 105.0, 225.0])  # LightSlateGray, RoyalBlue


class PushTEnv(gym.Env):
    """PushT behind the suite contract: every ``reset(seed=s)`` draws gym-pusht's own seeded start."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_HZ}

    def __init__(self, task: str = TASK, track: Track = "vision", image_size: int = 96,
                 max_episode_steps: int = MAX_EPISODE_STEPS, render_size: int | None = None, shift: str = "none"):
        PushTSuite().check_tasks([task])
        self.shift = PushTSuite().parse_shift(shift)
        self.task, self.track, self.image_size = task, track, image_size
        self.max_episode_steps = max_episode_steps
        self.render_mode = "rgb_array"
        self.render_images = True  # a hint only: gym-pusht draws its pixels inside every step
        self._render_size = render_size or image_size
        self._env = shiftable_pusht()(obs_type="pixels_agent_pos" if track == "vision" else "environment_state_agent_pos",
                             observation_width=image_size, observation_height=image_size,
                             visualization_width=self._render_size, visualization_height=self._render_size)
        spaces: dict[str, gym.Space] = {}
        if track == "vision":
            spaces[IMAGE_KEY] = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        else:  # the T's corners may leave the plane while the block is pushed along a wall
            spaces[KEYPOINTS_KEY] = gym.spaces.Box(-np.inf, np.inf, (16,), np.float32)
        spaces[STATE_KEY] = gym.spaces.Box(0, WORLD, (2,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(0.0, WORLD, (2,), np.float32)
        self._steps = 0
        self.variation = PlaneVariation(self, self.shift)
        if self.shift:
            self._env.variation = self.variation

    @property
    def simulator(self):
        """gym-pusht's own environment (its pymunk space, pusher body, block body and goal pose)."""
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        observation, _ = self._env.reset(seed=seed)
        if self.shift:
            self.variation.after_reset(seed)
            observation = self._env.get_obs()  # seen through the episode's draws, placed where they put things
        self._steps = 0
        self._block_start = self._block_pose()
        self._block_moved, self._best_coverage = False, 0.0
        return self._observation(observation), {"is_success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), 0.0, WORLD)
        self.variation.before_step(self._steps)
        observation, reward, success, _, info = self._env.step(action)
        self._steps += 1
        truncated = self._steps >= self.max_episode_steps
        coverage = float(info["coverage"])
        self._block_moved |= not np.allclose(self._block_pose(), self._block_start, atol=1e-6)
        self._best_coverage = max(self._best_coverage, coverage)
        step_info: dict[str, Any] = {"is_success": bool(success), "coverage": coverage}
        if truncated and not success:
            step_info["failure"] = self._failure(coverage)
        return self._observation(observation), float(reward), bool(success), truncated, step_info

    def _block_pose(self) -> np.ndarray:
        return np.array([*self._env.block.position, self._env.block.angle])

    def _failure(self, coverage: float) -> str:
        """The episode's ``FAILURE_TAGS`` entry, from the block's pose and coverage of the goal."""
        if not self._block_moved:
            return "never-reached"
        if coverage >= NEAR_COVERAGE:
            return "stalled-near-goal"
        return "lost-coverage" if self._best_coverage >= NEAR_COVERAGE else "misplaced"

    def render(self) -> np.ndarray:
        """The top-down frame at ``render_size``, with the commanded target marked."""
        return self._env.render()

    def _observation(self, raw: Any) -> dict[str, np.ndarray]:
        seen = {IMAGE_KEY: raw["pixels"]} if self.track == "vision" else {
            KEYPOINTS_KEY: np.asarray(raw["environment_state"], dtype=np.float32)}
        return {**seen, STATE_KEY: np.asarray(raw["agent_pos"], dtype=np.float32)}

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Pusher, block and goal positions on the plane (z = 0), and their pixels in the observation image
        (pygame draws x to the right and y down, so a point's pixel is its position scaled to the image)."""
        env = self._env
        xy = np.array([env.agent.position, env.block.position, env.goal_pose[:2]], dtype=np.float64)
        xyz = np.concatenate([xy, np.zeros((3, 1))], axis=1)
        uv = self.variation.project(xy) * self.image_size / WORLD  # where the (possibly moved) camera shows them
        return {"keypoints_xyz": xyz.astype(np.float32), "keypoints_uv": uv.astype(np.float32)}

    def close(self) -> None:
        self._env.close()
        super().close()


class PlaneVariation:
    """A ``Shift`` of the PushT suite's ``FACTORS`` applied to one environment: after every reset the episode's
    draws are made (placement applied at once), the block is moved when the displacement's step comes, and every
    frame is drawn through ``draw`` (gym-pusht's own drawing, with the colours, distractors, camera and lighting of
    the episode)."""

    def __init__(self, env: PushTEnv, shift: Shift):
        self.env, self.shift = env, shift
        self._restore()

    def _restore(self) -> None:
        """gym-pusht's own look, and no draw yet."""
        self.colours = {"plane": BACKGROUND, "goal": GOAL_COLOUR, "block": BLOCK_COLOUR, "pusher": PUSHER_COLOUR}
        self.view = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # the camera: plane pixel -> image pixel (2x3)
        self.light: np.ndarray | None = None  # per-pixel intensity gain [512, 512, 1]
        self.distractors: list[tuple[str, np.ndarray, float, tuple[int, int, int]]] = []
        self.displace_at: int | None = None
        self.displace_by = 0.0
        self._rng: dict[str, np.random.Generator] = {}

    def after_reset(self, seed: int | None) -> None:
        """Draw this episode's factors, restoring gym-pusht's look first."""
        self._restore()
        scatter = None
        for setting in self.shift.settings:
            rng = self._rng[setting.factor] = self.shift.rng(setting.factor, seed)
            scale = setting.scale(rng)
            if setting.factor == "camera":
                px, degrees, zoom = CAMERA_LEVELS[setting.level]
                turn = scale * degrees * rng.choice([-1.0, 1.0])
                self.view = cv2().getRotationMatrix2D((WORLD / 2, WORLD / 2), turn,
                                                      1 + scale * zoom * rng.choice([-1.0, 1.0]))
                self.view[:, 2] += scale * px * random_direction(rng, 2)
            elif setting.factor == "lighting":
                fraction = scale * LIGHTING_LEVELS[setting.level]
                across = np.stack(np.meshgrid(np.arange(WORLD), np.arange(WORLD)), -1) - WORLD / 2  # (x, y) per pixel
                gradient = across @ random_direction(rng, 2) / WORLD  # -0.7 to 0.7 across the plane
                self.light = (1 + fraction * rng.choice([-1.0, 1.0]) + fraction * gradient)[..., None]
            elif setting.factor == "colour":
                strength = scale * COLOUR_LEVELS[setting.level]
                self.colours = {part: np.clip(c * (1 + strength * rng.uniform(-1, 1, 3)), 0, 255)
                                for part, c in self.colours.items()}
            elif setting.factor == "placement":
                self._place(rng, *(scale * np.array(PLACEMENT_LEVELS[setting.level])))
            elif setting.factor == "displacement":
                self.displace_at = int(rng.integers(DISPLACEMENT_STEPS[0], DISPLACEMENT_STEPS[1] + 1))
                self.displace_by = scale * DISPLACEMENT_LEVELS[setting.level]
            elif setting.factor == "distractors":
                scatter = rng, round(scale * DISTRACTOR_LEVELS[setting.level])
        if scatter is not None:  # after the camera and placement: in view, clear of where things now are
            self._scatter(*scatter)

    def _fits(self, position: np.ndarray, angle: float) -> bool:
        """Whether the block at this pose lies clear of the walls and of the pusher."""
        sim = self.env.simulator
        corners = OUTLINE @ rotation(angle).T + position
        pusher = (np.array(sim.agent.position) - position) @ rotation(angle)
        return bool(((corners > INSIDE[0]) & (corners < INSIDE[1])).all()
                    and distance_to_tee(pusher) > PUSHER_RADIUS + 5)

    def _place(self, rng: np.random.Generator, past: float, goal_px: float, goal_degrees: float) -> None:
        """Put the block outside gym-pusht's start range (redrawn until it fits) and move the goal pose."""
        sim = self.env.simulator
        for _ in range(1000):
            side = rng.random(2) < 0.5
            position = np.where(side, BLOCK_RANGE[0] - rng.uniform(0, past, 2), BLOCK_RANGE[1] + rng.uniform(0, past, 2))
            if self._fits(position, sim.block.angle):
                break
        else:
            raise RuntimeError(f"no block placement {past:g} px past the range fits on the plane")
        sim.block.position = position.tolist()
        sim.space.reindex_shapes_for_body(sim.block)
        goal = np.array(sim.goal_pose, dtype=np.float64)
        goal[:2] += goal_px * random_direction(rng, 2)
        goal[2] += np.deg2rad(goal_degrees) * rng.choice([-1.0, 1.0])
        sim.goal_pose = goal

    def _scatter(self, rng: np.random.Generator, count: int) -> None:
        """Shapes on the plane where the camera sees them, clear of the block, the goal T and the pusher."""
        sim = self.env.simulator
        block, goal = np.array(sim.block.position), np.array(sim.goal_pose)
        for _ in range(10_000):
            if len(self.distractors) == count:
                return
            centre, size = rng.uniform(40, WORLD - 40, 2), float(rng.uniform(12, 30))
            seen = self.view @ np.append(centre, 1.0)
            clear = min(distance_to_tee((centre - block) @ rotation(sim.block.angle)),
                        distance_to_tee((centre - goal[:2]) @ rotation(goal[2])),
                        np.linalg.norm(centre - np.array(sim.agent.position)) - PUSHER_RADIUS)
            if clear < size + 15 or not ((seen > size) & (seen < WORLD - size)).all():
                continue
            rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(*rng.uniform([0, 0.6, 0.7], 1)))
            kind = ("circle", "square", "triangle")[rng.integers(3)]
            self.distractors.append((kind, centre, size, rgb))
        if len(self.distractors) < count:
            raise RuntimeError(f"no room on the plane for {count} distractors clear of the block, goal and pusher")

    def before_step(self, step: int) -> None:
        """At the planned step, move the block by the level's distance: in the drawn direction or, where the block
        would not fit there, the nearest of 16 directions around it that fits."""
        if step != self.displace_at:
            return
        sim = self.env.simulator
        start = np.arctan2(*random_direction(self._rng["displacement"], 2)[::-1])
        for turn in sorted(range(16), key=lambda k: min(k, 16 - k)):  # the drawn direction, then its neighbours
            angle = start + 2 * np.pi * turn / 16
            target = np.array(sim.block.position) + self.displace_by * np.array([np.cos(angle), np.sin(angle)])
            if self._fits(target, sim.block.angle):
                sim.block.position = target.tolist()
                sim.block.velocity, sim.block.angular_velocity = (0, 0), 0
                sim.space.reindex_shapes_for_body(sim.block)
                self.env._block_start = self.env._block_pose()  # the trace counts the policy's moves, not ours
                return

    def draw(self) -> Any:
        """gym-pusht's ``_draw`` (plane, goal T, then the bodies), in this episode's colours, with the distractors
        on the plane, seen through this episode's camera and light."""
        import pygame
        from gym_pusht.envs.pymunk_override import DrawOptions

        sim = self.env.simulator
        screen = pygame.Surface((int(WORLD), int(WORLD)))
        screen.fill(tuple(int(c) for c in self.colours["plane"]))
        goal_body = sim.get_goal_pose_body(sim.goal_pose)
        for shape in sim.block.shapes:
            points = [pygame_point(goal_body.local_to_world(v), screen) for v in shape.get_vertices()]
            pygame.draw.polygon(screen, tuple(int(c) for c in self.colours["goal"]), points + [points[0]])
        for kind, centre, size, rgb in self.distractors:
            if kind == "circle":
                pygame.draw.circle(screen, rgb, centre.tolist(), size)
            elif kind == "square":
                pygame.draw.rect(screen, rgb, pygame.Rect(*(centre - size).tolist(), 2 * size, 2 * size))
            else:
                pygame.draw.polygon(screen, rgb, (centre + size * np.array([[0, -1], [0.87, 0.5], [-0.87, 0.5]])).tolist())
        for shape in sim.block.shapes:
            shape.color = pygame.Color(*(int(c) for c in self.colours["block"]))
        for shape in sim.agent.shapes:
            shape.color = pygame.Color(*(int(c) for c in self.colours["pusher"]))
        sim.space.debug_draw(DrawOptions(screen))
        if self.shift["camera"] is None and self.light is None:
            return screen
        image = np.transpose(pygame.surfarray.array3d(screen), (1, 0, 2)).astype(np.float32)  # rows are y
        if self.shift["camera"] is not None:  # off the plane: the plane's colour, as a camera sees more table
            image = cv2().warpAffine(image, self.view, (int(WORLD), int(WORLD)),
                                     borderValue=tuple(float(c) for c in self.colours["plane"]))
        if self.light is not None:
            image = image * self.light
        return pygame.surfarray.make_surface(np.transpose(np.clip(image, 0, 255).astype(np.uint8), (1, 0, 2)))

    def project(self, xy: np.ndarray) -> np.ndarray:
        """Plane pixels ``[N, 2]`` -> where this episode's camera shows them (plane pixels)."""
        return xy @ self.view[:, :2].T + self.view[:, 2]


def pygame_point(point: Any, screen: Any) -> tuple[int, int]:
    import pymunk.pygame_util

    return pymunk.pygame_util.to_pygame(point, screen)


def cv2() -> Any:
    """OpenCV, which gym-pusht draws with (imported on first use, as gym-pusht itself is)."""
    import cv2 as opencv

    return opencv


@cache
def shiftable_pusht() -> type:
    """gym-pusht's environment whose drawing a ``PlaneVariation`` takes over when the episode is shifted."""
    from gym_pusht.envs.pusht import PushTEnv as GymPushT

    class ShiftablePushT(GymPushT):
        variation: PlaneVariation | None = None

        def _draw(self):
            return super()._draw() if self.variation is None else self.variation.draw()

    return ShiftablePushT


# The scripted expert. It relies on three facts of gym-pusht's physics: the space's damping is 0, which in pymunk
# means every body loses all its velocity each physics step, so the block is quasi-static (it moves only while it
# is pushed and stops when the pusher stops); every shape is frictionless, so a push acts only along the contact
# normal; and the pusher is kinematic, so the walls do not stop it.
PUSHER_RADIUS = 15.0
WAYPOINT_OFFSET = PUSHER_RADIUS + 10.0  # waypoints lie this far out from the T's convex corners
PX_PER_RADIAN = 100.0  # weight of the angle in the pose error (coverage-equivalent is ~50; more gave shorter episodes)
SCORE_REGULARIZER = 25.0  # px added to the travel of the gain-per-travel score
LOOK, LOOK_FAR = 40.0, 60.0  # carrot distance ahead along the route, near the block and far from it
# The T in the block frame: its outline (counter-clockwise), its two rectangles (x0, y0, x1, y1), convex corners.
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)], float)
RECTANGLES = np.array([[-60, 0, 60, 30], [-15, 30, 15, 120]], float)
CONVEX_CORNERS = [0, 1, 2, 4, 5, 7]


def distance_to_tee(points: np.ndarray) -> np.ndarray:
    """Distance from ``points [..., 2]`` (block frame) to the T; 0 inside."""
    distance = np.inf
    for x0, y0, x1, y1 in RECTANGLES:
        dx = np.maximum(np.maximum(x0 - points[..., 0], points[..., 0] - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - points[..., 1], points[..., 1] - y1), 0.0)
        distance = np.minimum(distance, np.hypot(dx, dy))
    return distance


def segment_distance_to_tee(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Distance from the segments ``starts -> ends [M, 2]`` to the T: 0 where they cross it, else the least of the
    end-to-T and rectangle-corner-to-segment distances (exact for convex pieces)."""
    starts, ends = np.broadcast_arrays(np.atleast_2d(starts), np.atleast_2d(ends))
    out = np.minimum(distance_to_tee(starts), distance_to_tee(ends))
    d = ends - starts
    length2 = np.maximum((d * d).sum(-1), 1e-9)
    for x0, y0, x1, y1 in RECTANGLES:
        for cx, cy in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
            t = np.clip(((cx - starts[:, 0]) * d[:, 0] + (cy - starts[:, 1]) * d[:, 1]) / length2, 0, 1)
            out = np.minimum(out, np.hypot(starts[:, 0] + t * d[:, 0] - cx, starts[:, 1] + t * d[:, 1] - cy))
        # Liang-Barsky clipping: does the segment enter the rectangle?
        t0, t1 = np.zeros(len(starts)), np.ones(len(starts))
        hit = np.ones(len(starts), bool)
        for p, q in ((-d[:, 0], starts[:, 0] - x0), (d[:, 0], x1 - starts[:, 0]), (-d[:, 1], starts[:, 1] - y0),
                     (d[:, 1], y1 - starts[:, 1])):
            parallel = np.abs(p) < 1e-12
            hit &= ~(parallel & (q < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
            t0 = np.where(~parallel & (p < 0), np.maximum(t0, t), t0)
            t1 = np.where(~parallel & (p > 0), np.minimum(t1, t), t1)
        out = np.where(hit & (t0 <= t1), 0.0, out)
    return out


def rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _outward_normal(k: int) -> np.ndarray:
    p0, p1 = OUTLINE[k % len(OUTLINE)], OUTLINE[(k + 1) % len(OUTLINE)]
    u = (p1 - p0) / np.linalg.norm(p1 - p0)
    return np.array([u[1], -u[0]])


class PushTExpert:
    """A scripted expert over the true pymunk state: push the T, contact by contact, into its goal pose.

    Stateless, so the action is a deterministic function of the block's pose and the pusher's position (what a
    policy sees in the image), which keeps it learnable by imitation:

    1. The pose error ``e``: goal centre of mass minus the block's, and the angle error in px (``PX_PER_RADIAN``).
    2. For each candidate contact on the T's outline (sampled every ~3 px in the block frame where the pusher
       touches one edge only), the frictionless quasi-static model gives the block's twist per px of pusher travel
       along the inward normal; the best push length along it and the error it removes (the gain) follow in closed
       form.
    3. Contacts are ranked by gain per px of pusher motion, ``gain / (route + push + SCORE_REGULARIZER)``, where the
       route is the shortest collision-free path to the contact over waypoints around the T's convex corners. So
       the expert keeps pushing where it is unless another contact is clearly better, and since the block stays
       put while the pusher travels, the choice holds along the way.
    4. The action is a carrot ``LOOK`` px ahead along route, contact and push (pulled back until the straight line
       to it clears the T): the PD-driven pusher settles on it without overshoot, so the block stops where the push
       ends.

    Measured on gym-pusht's seeded starts 0-99: 100 successes, 74.5 steps per episode on average, 2.7 ms per call
    (``benchmarks/pusht_expert.py``).
    """

    def __init__(self, env: PushTEnv):
        self.env = env
        contacts, normals = [], []
        for k in range(len(OUTLINE)):
            p0, p1 = OUTLINE[k], OUTLINE[(k + 1) % len(OUTLINE)]
            length = np.linalg.norm(p1 - p0)
            u = (p1 - p0) / length
            outward = np.array([u[1], -u[0]])
            for t in np.linspace(1.0, length - 1.0, max(int(length // 3), 2)):
                if distance_to_tee(p0 + u * t + PUSHER_RADIUS * outward) >= PUSHER_RADIUS - 1e-6:
                    contacts.append(p0 + u * t)
                    normals.append(-outward)
        self.inward = np.array(normals)
        self.pusher_at_contact = np.array(contacts) - PUSHER_RADIUS * self.inward
        waypoints = []
        for k in CONVEX_CORNERS:
            before, after = _outward_normal(k - 1), _outward_normal(k)
            for n in (before, (before + after) / np.linalg.norm(before + after), after):
                waypoints.append(OUTLINE[k] + WAYPOINT_OFFSET * n)
        self.waypoints = np.array(waypoints)
        n = len(waypoints)
        i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        distance = np.linalg.norm(self.waypoints[i] - self.waypoints[j], axis=-1)
        clear = segment_distance_to_tee(self.waypoints[i].reshape(-1, 2),
                                        self.waypoints[j].reshape(-1, 2)).reshape(n, n) >= PUSHER_RADIUS + 4
        self.waypoint_edges = np.where(clear, distance, np.inf)
        # Last legs, waypoint -> contact (they may end touching the block).
        i, j = np.meshgrid(np.arange(n), np.arange(len(contacts)), indexing="ij")
        distance = np.linalg.norm(self.waypoints[i] - self.pusher_at_contact[j], axis=-1)
        clear = segment_distance_to_tee(self.waypoints[i].reshape(-1, 2),
                                        self.pusher_at_contact[j].reshape(-1, 2)).reshape(n, -1) >= PUSHER_RADIUS - 0.5
        self.waypoint_to_contact = np.where(clear, distance, np.inf)

    def reset(self) -> None:
        """Read the block's mass, inertia and centre of mass (after every ``env.reset``)."""
        block = self.env.simulator.block
        self.cog = np.array(block.center_of_gravity)
        r = self.pusher_at_contact + PUSHER_RADIUS * self.inward - self.cog  # contact point relative to the CoG
        cross = r[:, 0] * self.inward[:, 1] - r[:, 1] * self.inward[:, 0]
        impulse = 1.0 / (1.0 / block.mass + cross ** 2 / block.moment)  # per px of pusher travel along the normal
        self.velocity_per_px = self.inward * impulse[:, None]
        self.spin_per_px = cross / block.moment * impulse

    def select_action(self, observation: dict[str, Any] | None = None) -> np.ndarray:
        sim = self.env.simulator
        block_position, to_world = np.array(sim.block.position), rotation(sim.block.angle)
        push, gain = self._pushes(sim, to_world)
        pusher = (np.array(sim.agent.position) - block_position) @ to_world  # in the block frame
        clearance = float(distance_to_tee(pusher))
        routes = self._routes(pusher, clearance, to_world, block_position)
        contact_world = self.pusher_at_contact @ to_world.T + block_position
        contact_on_table = np.all((contact_world > 0) & (contact_world < WORLD), axis=1)
        score = np.where(contact_on_table & np.isfinite(routes.travel), gain / (routes.travel + push + SCORE_REGULARIZER),
                         -np.inf)
        best = int(score.argmax())
        contact = self.pusher_at_contact[best]
        route = np.array([pusher, *routes.waypoints_to(best, self.waypoints), contact,
                          contact + min(push[best], LOOK) * self.inward[best]])
        target = self._carrot(route, clearance, contact)
        return np.clip(target @ to_world.T + block_position, 0, WORLD).astype(np.float32)

    def _pushes(self, sim: Any, to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per contact, the best push length along its inward normal and the pose error that push removes."""
        block_angle, block_position = sim.block.angle, np.array(sim.block.position)
        gx, gy, goal_angle = sim.goal_pose
        error = np.concatenate([np.array([gx, gy]) + rotation(goal_angle) @ self.cog
                                - (block_position + to_world @ self.cog),
                                [PX_PER_RADIAN * ((goal_angle - block_angle + np.pi) % (2 * np.pi) - np.pi)]])
        twist = np.concatenate([self.velocity_per_px @ to_world.T, PX_PER_RADIAN * self.spin_per_px[:, None]], axis=1)
        along = twist @ error
        twist2 = (twist * twist).sum(1)
        push = np.maximum(along, 0) / twist2
        error2 = error @ error
        gain = np.sqrt(error2) - np.sqrt(np.maximum(error2 - np.maximum(along, 0) ** 2 / twist2, 0))
        return push, gain

    def _routes(self, pusher: np.ndarray, clearance: float, to_world: np.ndarray,
                block_position: np.ndarray) -> Routes:
        """The shortest collision-free route (block frame) from the pusher to every contact: straight, or over the
        waypoints around the T's corners; waypoints and contacts off the table are not used."""
        on_table = np.all((self.waypoints @ to_world.T + block_position > 0)
                          & (self.waypoints @ to_world.T + block_position < WORLD), axis=1)
        between = np.where(on_table[:, None] & on_table[None, :], self.waypoint_edges, np.inf)
        next_hop = np.tile(np.arange(len(between)), (len(between), 1))
        np.fill_diagonal(between, 0.0)
        for k in range(len(between)):  # Floyd-Warshall, keeping the next hop
            through = between[:, k:k + 1] + between[k:k + 1, :]
            better = through < between
            between = np.where(better, through, between)
            next_hop = np.where(better, next_hop[:, k:k + 1], next_hop)
        to_waypoint = np.where(on_table & (segment_distance_to_tee(pusher, self.waypoints)
                                           >= min(PUSHER_RADIUS + 4, clearance - 0.5)),
                               np.linalg.norm(self.waypoints - pusher, axis=1), np.inf)
        via_first = to_waypoint[:, None] + between
        first = via_first.argmin(0)
        via_last = via_first.min(0)[:, None] + self.waypoint_to_contact
        via = via_last.min(0)
        direct = segment_distance_to_tee(pusher, self.pusher_at_contact) >= min(PUSHER_RADIUS - 0.5, clearance - 0.5)
        travel = np.minimum(np.where(direct, np.linalg.norm(self.pusher_at_contact - pusher, axis=1), np.inf), via)
        return Routes(travel, direct, via, first, via_last.argmin(0), next_hop)

    def _carrot(self, route: np.ndarray, clearance: float, contact: np.ndarray) -> np.ndarray:
        """The point ``LOOK``-``LOOK_FAR`` px ahead along ``route`` (pusher, waypoints, contact, push end), pulled
        back until the straight line to it clears the T."""
        legs = np.linalg.norm(np.diff(route, axis=0), axis=1)
        distance_along = np.concatenate([[0], np.cumsum(legs)])
        approach = distance_along[-2]
        pusher, target = route[0], route[-1]
        for ahead in np.arange(min(np.interp(clearance, [30.0, 80.0], [LOOK, LOOK_FAR]), distance_along[-1]), 0, -5.0):
            k = min(np.searchsorted(distance_along, ahead) - 1, len(legs) - 1)
            point = route[k] + (route[k + 1] - route[k]) * (ahead - distance_along[k]) / max(legs[k], 1e-9)
            check = point if ahead <= approach else contact
            needed = min(PUSHER_RADIUS + 2, clearance - 0.5, float(distance_to_tee(check)) - 0.5)
            target = point
            if segment_distance_to_tee(pusher, check)[0] >= needed:
                break
        return target


class Routes(NamedTuple):
    """Routes from the pusher to every contact (``PushTExpert._routes``)."""

    travel: np.ndarray  # route length per contact, inf where none
    direct: np.ndarray  # whether the straight line is clear
    via: np.ndarray  # length over waypoints
    first: np.ndarray  # per waypoint, the first waypoint of the best route to it
    last: np.ndarray  # per contact, the last waypoint before it
    next_hop: np.ndarray  # [i, j]: the waypoint after i on the shortest way to j

    def waypoints_to(self, contact: int, waypoints: np.ndarray) -> list[np.ndarray]:
        """The waypoints the route to ``contact`` passes (none when it goes straight)."""
        if self.direct[contact] or not np.isfinite(self.via[contact]):
            return []
        end = self.last[contact]
        hop = self.first[end]
        out = [waypoints[hop]]
        while hop != end:
            hop = self.next_hop[hop, end]
            out.append(waypoints[hop])
        return out


class PusherPropagator:
    """The pusher's kinematics for the dream: gym-pusht drives the (kinematic, so never blocked) pusher with a PD
    controller toward the commanded position, 10 physics steps of 10 ms per action; integrated here exactly."""

    dims, unit = 2, "px"

    def __init__(self, env: PushTEnv):
        sim = env.simulator
        self.k_p, self.k_v, self.dt = sim.k_p, sim.k_v, sim.dt
        self.substeps = int(1 / (sim.dt * sim.control_hz))
        self._velocity = np.zeros(2)

    def reset(self, observation: dict[str, np.ndarray]) -> None:
        self._velocity = np.zeros(2)  # every start is at rest

    def step(self, state: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        position = state[:2].astype(np.float64)
        for target in np.clip(chunk, 0.0, WORLD):
            for _ in range(self.substeps):
                self._velocity += (self.k_p * (target - position) - self.k_v * self._velocity) * self.dt
                position = position + self._velocity * self.dt
        return np.concatenate([position, state[2:]]).astype(np.float32)


class PushTSuite(Suite):
    """PushT: one task, push the T into its goal pose."""

    name = "pusht"
    env_class = PushTEnv
    expert_class = PushTExpert
    control_hz = CONTROL_HZ
    max_episode_steps = MAX_EPISODE_STEPS
    default_image_size = 96
    robot_type = "2d pointer"
    image_key = IMAGE_KEY
    state_key = STATE_KEY
    keypoint_names = ("pusher", "block", "goal")
    factors = FACTORS
    score = "min(coverage / 0.95, 1), the reward Diffusion Policy and LeRobot report as coverage"
    failure_tags = FAILURE_TAGS

    def tasks(self) -> list[str]:
        return [TASK]

    def instruction(self, task: str) -> str:
        return "push the t into the goal"

    def observation_features(self, track: Track, image_size: int) -> dict[str, dict[str, Any]]:
        pusher = {"dtype": "float32", "shape": [2], "names": ["agent_x", "agent_y"]}
        if track == "state":
            return {KEYPOINTS_KEY: {"dtype": "float32", "shape": [16],
                                    "names": [f"{axis}{k}" for k in range(8) for axis in "xy"]},
                    STATE_KEY: pusher}
        return {IMAGE_KEY: image_feature(image_size), STATE_KEY: pusher}

    def action_feature(self) -> dict[str, Any]:
        return {"dtype": "float32", "shape": [2], "names": ["target_x", "target_y"]}

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(2, np.float32), np.full(2, WORLD, np.float32)

    def teleop_action(self, state: np.ndarray, command: np.ndarray) -> np.ndarray:
        """A target ``TELEOP_PX`` px from the pusher along the command's x and y (y down, as drawn); z and grip do
        nothing."""
        return np.clip(state[:2] + TELEOP_PX * np.asarray(command[:2]), 0.0, WORLD).astype(np.float32)

    def state_propagator(self, env: PushTEnv) -> StatePropagator:
        return PusherPropagator(env)


def expert_outcomes(seeds: list[int], track: Track = "state", max_steps: int = MAX_EPISODE_STEPS) -> list[dict[str, Any]]:
    """The scripted expert from each seeded start, run through this adapter exactly as ``wam collect`` runs it
    (first attempt): success, steps, the maximum reward (Diffusion Policy's coverage metric) and raw coverage."""
    env = PushTEnv(track=track, max_episode_steps=max_steps)
    expert = PushTExpert(env)
    outcomes = []
    try:
        for seed in seeds:
            env.reset(seed=seed)
            expert.reset()
            success = truncated = False
            rewards, coverages = [], []
            while not (success or truncated):
                _, reward, success, truncated, info = env.step(expert.select_action())
                rewards.append(reward)
                coverages.append(info["coverage"])
            outcomes.append({"seed": seed, "success": success, "steps": len(rewards), "max_reward": max(rewards),
                             "max_coverage": max(coverages)})
    finally:
        env.close()
    return outcomes
