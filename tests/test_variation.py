"""Factors of variation: parsing a shift, and each MetaWorld factor changing what it declares, per level, reproducibly
per episode seed, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, wam_refused
from wam.envs import get_suite
from wam.envs.metaworld import (
    CAMERA_LEVELS,
    DISPLACEMENT_LEVELS,
    DISPLACEMENT_STEPS,
    DISTRACTOR_LEVELS,
    FACTORS,
    IMAGE_KEY,
    LIGHTING_LEVELS,
    MetaWorldEnv,
    ScriptedExpert,
    loose_key_body,
)
from wam.envs.pusht import DISPLACEMENT_LEVELS as PUSHT_DISPLACEMENT
from wam.envs.pusht import IMAGE_KEY as PUSHT_IMAGE
from wam.envs.pusht import STATE_KEY as PUSHT_STATE
from wam.envs.pusht import PushTEnv, PushTExpert
from wam.envs.variation import LEVELS, parse_shift

pytestmark = pytest.mark.sim
SUITE = get_suite("metaworld")


def test_a_shift_is_parsed_into_the_suites_order_with_explicit_levels():
    assert SUITE.check_shift("none") == "none" and not SUITE.parse_shift("none")
    assert SUITE.check_shift("colour=weak,camera") == "camera=medium,colour=weak"
    shift = SUITE.parse_shift("lighting=up-to-strong")
    assert shift["lighting"].up_to and shift["lighting"].level == "strong" and shift["camera"] is None
    for spec, message in [("fog=weak", "unknown factor 'fog'"), ("camera=huge", "unknown level 'huge'"),
                          ("camera=weak,camera=strong", "appears twice")]:
        with pytest.raises(ValueError, match=message):
            SUITE.parse_shift(spec)
    with pytest.raises(ValueError, match="declares no factors"):
        parse_shift("camera", {}, "pusht")
    with pytest.raises(ValueError, match="displacement.*cannot shift drawer-open-v3"):
        SUITE.check_shift("displacement", ["push-v3", "drawer-open-v3"])
    # Where applicable: each task takes the factors that can shift it; a factor that shifts none is still refused.
    assert SUITE.check_shift("displacement", ["push-v3", "drawer-open-v3"], where_applicable=True) == \
        "displacement=medium"
    assert SUITE.task_shift("camera,displacement", "drawer-open-v3") == "camera=medium"
    assert SUITE.task_shift("displacement", "drawer-open-v3") == "none"
    assert SUITE.task_shift("camera,displacement", "push-v3") == "camera=medium,displacement=medium"
    with pytest.raises(ValueError, match="displacement.*cannot shift drawer-open-v3"):
        SUITE.check_shift("displacement", ["drawer-open-v3"], where_applicable=True)


def first_frame(shift: str, task: str = "push-v3", seed: int = 7) -> tuple[np.ndarray, MetaWorldEnv]:
    env = MetaWorldEnv(task, shift=shift)
    observation, _ = env.reset(seed=seed)
    return observation[IMAGE_KEY].astype(int), env


@pytest.mark.parametrize("level", LEVELS)
def test_camera_moves_and_turns_by_its_level_and_changes_nothing_else(level):
    plain, base = first_frame("none")
    metres, degrees = CAMERA_LEVELS[level]
    model = base._env.model
    home_pos, home_quat = model.cam_pos[base._cam_id].copy(), model.cam_quat[base._cam_id].copy()
    image, env = first_frame(f"camera={level}")
    cam = env._env.model
    assert np.linalg.norm(cam.cam_pos[env._cam_id] - home_pos) == pytest.approx(metres)
    turned = 2 * np.degrees(np.arccos(min(1.0, abs(float(cam.cam_quat[env._cam_id] @ home_quat)))))
    assert turned == pytest.approx(degrees, abs=1e-3)
    assert np.array_equal(env._keypoints_xyz(), base._keypoints_xyz())  # same placement, same hand
    assert np.abs(image - plain).mean() > 1
    again, twin = first_frame(f"camera={level}")
    assert np.array_equal(again, image)  # the draw is the seed's
    env.reset(seed=8)  # another episode: another direction, from the home pose (not on top of the last one)
    assert np.linalg.norm(cam.cam_pos[env._cam_id] - home_pos) == pytest.approx(metres)
    for e in (base, env, twin):
        e.close()


def test_lighting_colour_and_distractors_change_the_image_not_the_scene():
    plain, base = first_frame("none")
    changes = {}
    for factor in ("lighting", "colour", "distractors"):
        for level in LEVELS:
            image, env = first_frame(f"{factor}={level}")
            assert np.array_equal(env._keypoints_xyz(), base._keypoints_xyz()), factor
            changes[factor, level] = np.abs(image - plain).mean()
            if factor == "lighting":
                degrees = LIGHTING_LEVELS[level][0]
                cosine = np.sum(env._env.model.light_dir * base._env.model.light_dir, axis=1)
                assert np.degrees(np.arccos(np.clip(cosine, -1, 1))).max() <= degrees + 1e-6
            if factor == "distractors":
                assert len(env.variation._distractors) == DISTRACTOR_LEVELS[level]
                clear = env._keypoints_xyz()[:, :2]
                for d in env.variation._distractors:  # never on the hand, the object or the goal
                    assert np.linalg.norm(clear - d["pos"][:2], axis=1).min() >= 0.1
            env.close()
    base.close()
    for factor in ("lighting", "colour", "distractors"):
        assert 0 < changes[factor, "weak"] < changes[factor, "strong"], (factor, changes)


def test_a_factor_draws_the_same_whatever_else_is_shifted():
    _, alone = first_frame("camera=strong")
    _, together = first_frame("camera=strong,colour=medium,lighting=weak")
    model_a, model_b = alone._env.model, together._env.model
    assert np.array_equal(model_a.cam_pos, model_b.cam_pos) and np.array_equal(model_a.cam_quat, model_b.cam_quat)
    alone.close(), together.close()


def test_placement_leaves_the_training_range_by_its_level():
    widths = []
    for level in LEVELS:
        env = MetaWorldEnv("drawer-open-v3", shift=f"placement={level}")
        low, high = env._env._random_reset_space.low, env._env._random_reset_space.high
        varies = high > low
        past = []
        for seed in range(5):
            env.reset(seed=seed)
            x = env._env._last_rand_vec
            assert ((x < low) | (x > high))[varies].all()  # outside the training range on every varying axis
            past.append(np.maximum(low - x, x - high)[varies] / (high - low)[varies])
        env.close()
        widths.append(np.max(past))
    assert widths[0] <= 0.1 < widths[2] <= 0.5


def test_up_to_draws_a_strength_per_episode_no_larger_than_its_level():
    env = MetaWorldEnv("push-v3", shift="camera=up-to-medium")
    home = MetaWorldEnv("push-v3")._env.model.cam_pos[env._cam_id].copy()
    moved = []
    for seed in range(6):
        env.reset(seed=seed)
        moved.append(np.linalg.norm(env._env.model.cam_pos[env._cam_id] - home))
    env.close()
    assert max(moved) <= CAMERA_LEVELS["medium"][0] + 1e-9 and len(set(np.round(moved, 6))) == 6


def test_displacement_moves_the_key_object_once_and_the_expert_follows_it():
    """The object jumps by the level's distance at one step of the declared range; the scripted expert, which
    reads the true state, still succeeds: the shifted task stays solvable."""
    assert loose_key_body("drawer-open-v3") is None and loose_key_body("push-v3") is not None
    assert not SUITE.factor_applies("displacement", "drawer-open-v3")
    with pytest.raises(ValueError, match="no loose key object"):
        MetaWorldEnv("drawer-open-v3", shift="displacement=weak")
    env = MetaWorldEnv("push-v3", track="state", shift="displacement=strong")
    expert = ScriptedExpert(env)
    successes = 0
    for seed in range(3):
        env.reset(seed=seed)
        path, success, truncated = [env._keypoints_xyz()[1]], False, False
        while not (success or truncated):
            _, _, success, truncated, _ = env.step(expert.select_action())
            path.append(env._keypoints_xyz()[1])
        jumps = np.linalg.norm(np.diff(np.array(path), axis=0), axis=1)
        step = int(np.argmax(jumps))
        assert DISPLACEMENT_STEPS[0] <= step <= DISPLACEMENT_STEPS[1]
        assert jumps[step] == pytest.approx(DISPLACEMENT_LEVELS["strong"], abs=0.01)
        successes += success
    env.close()
    assert successes == 3


def test_a_collection_where_applicable_displaces_only_the_loose_objects(tmp_path, capsys):
    """``wam collect --shift displacement=up-to-medium --shift-where-applicable``: push's demonstrations are
    recorded with the object jumping (the expert follows it), drawer-open's exactly as without the shift, and the
    dataset records which task took which shift; without the flag the collection is refused in one line."""
    from wam.cli import main
    from wam.data.collect import CollectConfig, run_collect
    from wam.data.lerobot import LeRobotDataset

    tasks, spec = "push-v3,drawer-open-v3", "displacement=up-to-medium"
    assert main(["collect", "--tasks", tasks, "--episodes", "1", "--shift", spec, "--out", str(tmp_path / "no")]) == 2
    assert "cannot shift drawer-open-v3" in capsys.readouterr().err and not (tmp_path / "no").exists()
    plain = run_collect(CollectConfig(tasks=tasks, episodes=1, out=tmp_path / "plain", workers=1, track="state"))
    moved = run_collect(CollectConfig(tasks=tasks, episodes=1, out=tmp_path / "moved", workers=1, track="state",
                                      shift=spec, shift_where_applicable=True))
    assert moved["wam"]["task_shifts"] == {"push-v3": spec, "drawer-open-v3": "none"}
    assert "task_shifts" not in plain["wam"]
    frames = {name: LeRobotDataset.load(tmp_path / name).frames for name in ("plain", "moved")}
    for episode, same in ((0, False), (1, True)):  # push, then drawer-open
        states = [f["observation.state"][f["episode_index"] == episode] for f in frames.values()]
        assert (len(states[0]) == len(states[1]) and np.array_equal(*states)) == same
    # The push object (state 4:7) jumps once in the displaced demonstration, farther than any push moves it.
    largest = [np.linalg.norm(np.diff(f["observation.state"][f["episode_index"] == 0][:, 4:7], axis=0), axis=1).max()
               for f in frames.values()]
    assert largest[1] > 2 * largest[0]


def test_list_shifts_names_every_factor_and_level(capsys):
    result = wam_refused("eval", "--list-shifts")
    assert result.returncode == 0
    for factor in FACTORS.values():
        assert factor.name in result.stdout and all(meaning in result.stdout for meaning in factor.levels.values())
    assert "goal" in wam_refused("eval", "--list-shifts", "--suite", "pusht").stdout
    assert_one_line_error(wam_refused("eval", "--list-shifts", "--suite", "mujoco"), "unknown suite 'mujoco'")


def pusht_start(shift: str, seed: int = 3, image_size: int = 96) -> tuple[dict, PushTEnv]:
    env = PushTEnv(image_size=image_size, shift=shift)
    observation, _ = env.reset(seed=seed)
    return observation, env


def test_pusht_draws_exactly_as_gym_pusht_until_a_factor_acts():
    """The suite's own drawing of a shifted episode is gym-pusht's pixel for pixel where no factor has acted yet
    (displacement acts from step 5), so every difference a factor makes is the factor's."""
    plain, base = pusht_start("none")
    early, env = pusht_start("displacement=strong")
    assert np.array_equal(plain[PUSHT_IMAGE], early[PUSHT_IMAGE])
    base.close(), env.close()


@pytest.mark.parametrize("factor", ["camera", "lighting", "colour", "distractors"])
def test_pusht_appearance_factors_change_the_image_not_the_plane(factor):
    plain, base = pusht_start("none")
    changes = []
    for level in LEVELS:
        seen, env = pusht_start(f"{factor}={level}")
        assert np.array_equal(seen[PUSHT_STATE], plain[PUSHT_STATE])
        assert np.array_equal(env.ground_truth()["keypoints_xyz"], base.ground_truth()["keypoints_xyz"])
        changes.append(np.abs(seen[PUSHT_IMAGE].astype(int) - plain[PUSHT_IMAGE]).mean())
        again, twin = pusht_start(f"{factor}={level}")
        assert np.array_equal(again[PUSHT_IMAGE], seen[PUSHT_IMAGE])  # the draw is the seed's
        if factor == "camera":  # the ground-truth pixels follow the camera
            assert not np.allclose(env.ground_truth()["keypoints_uv"], base.ground_truth()["keypoints_uv"])
        env.close(), twin.close()
    base.close()
    assert 0 < changes[0] < changes[2], changes


def test_pusht_placement_and_displacement_move_the_block_and_the_expert_still_succeeds():
    """Placement starts the block past gym-pusht's range and moves the goal; displacement makes the block jump
    by the level's distance once; the scripted expert, which reads the true state, succeeds under both."""
    from wam.envs.pusht import BLOCK_RANGE

    for spec in ("placement=strong", "displacement=strong"):
        env = PushTEnv(track="state", shift=spec)
        expert = PushTExpert(env)
        for seed in range(3):
            env.reset(seed=seed)
            expert.reset()
            block = np.array(env.simulator.block.position)
            if spec.startswith("placement"):
                assert ((block < BLOCK_RANGE[0]) | (block > BLOCK_RANGE[1])).all()
                assert not np.allclose(env.simulator.goal_pose, [256, 256, np.pi / 4])
            path, success, truncated = [block], False, False
            while not (success or truncated):
                _, _, success, truncated, _ = env.step(expert.select_action())
                path.append(np.array(env.simulator.block.position))
            if spec.startswith("displacement"):
                jumps = np.linalg.norm(np.diff(np.array(path), axis=0), axis=1)
                assert np.isclose(jumps, PUSHT_DISPLACEMENT["strong"], atol=1e-6).sum() >= 1
            assert success, (spec, seed)
        env.close()
