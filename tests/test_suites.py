"""The suite interface: every registered suite keeps its contract, and PushT, the second suite, works end to end
(environment, scripted expert, ground truth, dream kinematics, and collect -> train -> eval -> dream)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from tests.conftest import assert_one_line_error, wam_cli, wam_refused
from wam.data.lerobot import LeRobotDataset
from wam.deployment.dream import DreamEnv
from wam.envs import SUITES, get_suite
from wam.envs.base import KEYPOINT_ROLES, STANDARD_GROUPS
from wam.envs.pusht import PushTEnv, PushTExpert, expert_outcomes
from wam.train.loop import build_model

pytestmark = pytest.mark.sim

SIZES = dict(d_model=32, n_layers=1, n_heads=2, inference_steps=2, image_channels=(8, 8, 8, 8))


@pytest.mark.parametrize("name", SUITES)
@pytest.mark.parametrize("track", ["vision", "state"])
def test_suite_keeps_its_contract(name, track):
    """The environment a suite builds observes exactly the features the suite declares, accepts its action bounds,
    gives the ground-truth keypoint rows and reports success the same way in every suite."""
    suite = get_suite(name)
    assert set(STANDARD_GROUPS) <= set(suite.groups()) and suite.check_shift("none") == "none"
    assert len(suite.keypoint_names) == len(KEYPOINT_ROLES)
    task = suite.groups()["quick"][0]
    size = suite.default_image_size
    features = suite.features(track, size)
    env = suite.make_env(task, track=track, max_episode_steps=3)
    try:
        declared = {k: f["shape"] for k, f in features.items() if k.startswith("observation.")}
        assert {k: list(s.shape) for k, s in env.observation_space.spaces.items()} == declared
        assert suite.track_of(declared) == track
        low, high = suite.action_bounds()
        assert list(low.shape) == features["action"]["shape"] == list(env.action_space.shape)
        observation, info = env.reset(seed=5)
        assert info == {"is_success": False} and set(observation) == set(declared)
        again, _ = env.reset(seed=5)
        assert all(np.array_equal(observation[k], again[k]) for k in declared), "a seed gives one start"
        truth = env.ground_truth()
        assert truth["keypoints_xyz"].shape == (3, 3) and truth["keypoints_uv"].shape == (3, 2)
        expert = suite.expert(env)
        expert.reset()
        for _ in range(3):
            action = np.clip(expert.select_action(observation), low, high)  # as collection records it
            assert action.shape == low.shape
            observation, reward, success, truncated, info = env.step(action)
            assert isinstance(reward, float) and info["is_success"] == success
        assert truncated or success
        assert success or info["failure"] in suite.failure_tags  # a failed episode says how it failed
        assert suite.instruction(task)
    finally:
        env.close()


@pytest.mark.parametrize("track", ["vision", "state"])
def test_pusht_passes_gymnasium_checks(track):
    env = PushTEnv(track=track)
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_pusht_expert_succeeds_from_seeded_starts():
    """The scripted expert over the true pymunk state (the benchmark runs all 100 starts)."""
    outcomes = expert_outcomes(list(range(8)))
    assert [o["success"] for o in outcomes] == [True] * 8
    assert all(o["max_reward"] == 1.0 and o["max_coverage"] > 0.95 and o["steps"] < 150 for o in outcomes)
    again = expert_outcomes([3])[0]
    assert again["steps"] == outcomes[3]["steps"] and again["max_coverage"] == pytest.approx(outcomes[3]["max_coverage"])


def test_pusht_ground_truth_lands_on_the_image():
    """The pusher's and the block's image coordinates fall on their colours in the observation."""
    env = PushTEnv()
    try:
        for seed in range(3):
            observation, _ = env.reset(seed=seed)
            image, uv = observation["observation.image"], env.ground_truth()["keypoints_uv"]
            u, v = np.floor(uv[0]).astype(int)
            assert image[v, u, 2] > 200 and image[v, u, 0] < 120, "royal blue pusher"
            assert np.allclose(env.ground_truth()["keypoints_xyz"][0, :2], observation["observation.state"])
    finally:
        env.close()


def test_pusht_dream_kinematics_are_exact():
    """The dream's pusher follows gym-pusht's PD controller step for step (the pusher is kinematic)."""
    suite = get_suite("pusht")
    env = PushTEnv()
    try:
        observation, _ = env.reset(seed=2)
        expert = PushTExpert(env)
        expert.reset()
        propagator = suite.state_propagator(env)
        propagator.reset(observation)
        state = observation["observation.state"]
        for _ in range(12):
            action = expert.select_action()
            observation, *_ = env.step(action)
            state = propagator.step(state, action[None])
            assert np.abs(state - observation["observation.state"]).max() < 1e-2
    finally:
        env.close()


def test_pusht_collection_is_a_checked_dataset_of_its_suite(pusht_data):
    assert wam_cli("data", "check", pusht_data).returncode == 0
    info = json.loads((pusht_data / "meta/info.json").read_text())
    assert (info["fps"], info["robot_type"], info["wam"]["suite"]) == (10.0, "2d pointer", "pusht")
    assert info["features"]["observation.image"]["shape"] == [96, 96, 3]
    assert info["features"]["action"]["shape"] == [2]
    dataset = LeRobotDataset.load(pusht_data)
    assert dataset.suite == "pusht" and all(e["success"] for e in dataset.episodes)


def test_pusht_train_eval_and_dream_from_the_command_line(pusht_data, tmp_path):
    run = tmp_path / "run"
    assert_one_line_error(wam_refused("train", "--suite", "metaworld", "--preset", "vla", "--data", pusht_data, "--out",
                                  run, "--steps", "4"), "holds pusht demonstrations, not metaworld")
    result = wam_cli("train", "--suite", "pusht", "--preset", "vla", "--data", pusht_data, "--out", run, "--steps", "4")
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "model/config.json").read_text())["suite"] == "pusht"
    result = wam_cli("eval", "--run", run, "--tasks", "pusht/pusht", "--episodes", "1", "--max-steps", "10",
                     "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "eval/eval_info.json").read_text())
    assert info["per_task"][0]["task"] == "pusht" and info["per_task"][0]["metrics"]["n_episodes"] == 1
    assert info["per_episode"][0]["steps"] == 10
    assert info["budget"]["control_hz"] == 10.0
    assert_one_line_error(wam_refused("eval", "--run", run, "--tasks", "drawer-open-v3", "--episodes", "1",
                                  "--out", tmp_path / "x"), "unknown pusht task 'drawer-open-v3'")
    assert_one_line_error(wam_refused("eval", "--run", run, "--suite", "metaworld", "--tasks", "drawer-open-v3",
                                  "--episodes", "1",
                                  "--out", tmp_path / "x"), "trained on the pusht suite")


def test_pusht_dream_steps_with_the_suite_bounds(pusht_data):
    dataset = LeRobotDataset.load(pusht_data)
    torch.manual_seed(0)
    model = build_model(None, dataset, {"substrate": "pixel-decoded", "backbone": "hybrid", "coupling": "joint"},
                        **SIZES).eval()
    env = DreamEnv(model, "pusht", max_episode_steps=2)
    try:
        check_env(env)
        assert env.action_space.shape == (model.config.future_offsets[0], 2) and env.action_space.high.max() == 512
        observation, _ = env.reset(seed=0)
        dreamed, *_ = env.step(np.full(env.action_space.shape, 256.0, np.float32))
        assert dreamed["observation.image"].shape == (96, 96, 3)
        moved = dreamed["observation.state"] - observation["observation.state"]
        assert np.all(np.sign(moved) == np.sign(256.0 - observation["observation.state"])), "toward the target"
    finally:
        env.close()


def test_metaworld_says_which_goals_only_a_marker_shows():
    """A goal placed at random with no body placed with it is shown only by MetaWorld's goal marker: a pixel at
    64x64, a few at 128x128, none where the task's model puts no marker at the goal."""
    suite = get_suite("metaworld")
    assert suite.free_goal("push-v3") and suite.free_goal("reach-v3")  # a random point on the table
    assert not suite.free_goal("shelf-place-v3")  # the shelf moves with the goal
    assert not suite.free_goal("drawer-open-v3") and not suite.free_goal("hammer-v3")  # shown with it / fixed
    small, large = suite.goal_marker_pixels("push-v3", 64), suite.goal_marker_pixels("push-v3", 128)
    assert 1 <= small <= 2 and 3 <= large <= 6
    assert suite.free_goal("coffee-pull-v3") and suite.goal_marker_pixels("coffee-pull-v3", 128) == 0  # no marker
    assert suite.free_goal("sweep-v3") and suite.goal_marker_pixels("sweep-v3", 128) == 0  # marker left at the origin
    pusht = get_suite("pusht")
    assert not pusht.free_goal("pusht")
    with pytest.raises(ValueError, match="draws no goal marker"):
        pusht.goal_marker_pixels("pusht", 96)


def test_lerobot_view_moves_only_the_camera():
    """The metaworld-lerobot suite is MetaWorld with corner2 where LeRobot's environment puts it: the same start
    (placement, hand) seen from closer, with the ground truth projected through the moved camera."""
    default, lerobot = (get_suite(name).make_env("pick-place-v3") for name in ("metaworld", "metaworld-lerobot"))
    try:
        ours, theirs = default.reset(seed=4)[0], lerobot.reset(seed=4)[0]
        assert np.array_equal(ours["observation.state"], theirs["observation.state"])
        assert not np.array_equal(ours["observation.images.corner2"], theirs["observation.images.corner2"])
        near, far = lerobot.ground_truth(), default.ground_truth()
        assert np.array_equal(near["keypoints_xyz"], far["keypoints_xyz"])
        assert np.all((near["keypoints_uv"] >= 0) & (near["keypoints_uv"] <= 64))
        spread = lambda uv: np.ptp(uv, axis=0).max()  # noqa: E731  (closer camera: the keypoints lie farther apart)
        assert spread(near["keypoints_uv"]) > spread(far["keypoints_uv"])
    finally:
        default.close()
        lerobot.close()


def test_wrist_camera_rides_on_the_hand():
    """The metaworld-wrist suite adds the hand's gripperPOV image to the vision track: the same start and the same
    corner2 image as MetaWorld's; a move of the fixed camera leaves the wrist image as it was, while lighting, which
    falls on the whole scene, changes both; the wrist view follows the hand."""
    corner, wrist = "observation.images.corner2", "observation.images.gripperPOV"
    suite = get_suite("metaworld-wrist")
    assert list(suite.observation_features("vision", 64)) == [corner, wrist, "observation.state"]
    assert list(suite.observation_features("state", 64)) == ["observation.state"]
    envs = {shift: suite.make_env("drawer-open-v3", shift=shift) for shift in ("none", "camera=strong", "lighting=strong")}
    plain = get_suite("metaworld").make_env("drawer-open-v3")
    try:
        first = {shift: env.reset(seed=2)[0] for shift, env in envs.items()}
        assert set(first["none"]) == set(envs["none"].observation_space.spaces) == {corner, wrist, "observation.state"}
        assert np.array_equal(first["none"][corner], plain.reset(seed=2)[0][corner])
        moved, lit = first["camera=strong"], first["lighting=strong"]
        assert not np.array_equal(moved[corner], first["none"][corner])
        assert np.array_equal(moved[wrist], first["none"][wrist])
        assert not np.array_equal(lit[corner], first["none"][corner])
        assert not np.array_equal(lit[wrist], first["none"][wrist])
        env = envs["none"]
        for _ in range(10):
            after = env.step(np.array([0.0, 0.0, 1.0, 0.0]))[0]  # the hand rises: its camera sees the table recede
        assert not np.array_equal(after[wrist], first["none"][wrist])
    finally:
        plain.close()
        for env in envs.values():
            env.close()
