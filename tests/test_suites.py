"""The suite interface: every registered suite keeps its contract."""

from __future__ import annotations

import numpy as np
import pytest

from wam.envs import SUITES, get_suite
from wam.envs.base import KEYPOINT_ROLES, STANDARD_GROUPS

pytestmark = pytest.mark.sim


@pytest.mark.parametrize("name", SUITES)
@pytest.mark.parametrize("track", ["vision", "state"])
def test_suite_keeps_its_contract(name, track):
    """The environment a suite builds observes exactly the features the suite declares, accepts its action bounds,
    gives the ground-truth keypoint rows and reports success the same way in every suite."""
    suite = get_suite(name)
    assert set(STANDARD_GROUPS) <= set(suite.groups()) and "none" in suite.shifts
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
        assert suite.instruction(task)
    finally:
        env.close()
