"""Failure tags: a failed episode says what went wrong, from simulator ground truth (``Suite.failure_tags``).

Each tag is produced here by a policy made to fail that way on seeded starts, so a tag that could not be reached,
or a definition that no longer matches the code, fails a test."""

from __future__ import annotations

import numpy as np
import pytest

from wam.envs import SUITES, get_suite
from wam.envs.metaworld import MetaWorldEnv, ScriptedExpert
from wam.envs.pusht import PushTEnv

SEED = 3


def run_metaworld(task: str, policy, max_steps: int) -> tuple[bool, str | None]:
    """One seeded state-track episode of ``policy(env, expert, step)``: its success and failure tag."""
    env = MetaWorldEnv(task, track="state", max_episode_steps=max_steps)
    expert = ScriptedExpert(env)
    try:
        env.reset(seed=SEED)
        for step in range(max_steps):
            _, _, success, truncated, info = env.step(policy(env, expert, step))
            if success or truncated:
                return success, info.get("failure")
    finally:
        env.close()
    raise AssertionError("the episode outlived its cap")


def still(env, expert, step):
    return np.zeros(4, np.float32)


def expert_then_still(steps: int):
    """The expert for ``steps`` steps, then nothing."""
    return lambda env, expert, step: expert.select_action() if step < steps else np.zeros(4, np.float32)


def lift_then_drop(env, expert, step):
    """The expert until it has lifted the object, then the gripper opens (-1) and the hand moves away."""
    if step < 35:
        return expert.select_action()
    return np.array([0.0, 0.0 if step < 50 else -1.0, 0.0, -1.0], np.float32)


def lift_then_carry_away(env, expert, step):
    """The expert until it has lifted the object, then the hand carries it away from the goal, still holding it."""
    if step < 35:
        return expert.select_action()
    return np.array([0.0, 0.0 if step < 50 else -1.0, 0.0, 1.0], np.float32)


@pytest.mark.parametrize("task, policy, max_steps, tag", [
    ("pick-place-v3", still, 40, "never-reached"),
    ("reach-v3", still, 40, "no-effect"),
    ("push-v3", expert_then_still(44), 80, "stalled-near-goal"),
    ("pick-place-v3", lift_then_drop, 90, "grasp-lost"),
    ("pick-place-v3", lift_then_carry_away, 90, "misplaced"),
])
def test_metaworld_failures_are_named_from_ground_truth(task, policy, max_steps, tag):
    success, failure = run_metaworld(task, policy, max_steps)
    assert not success and failure == tag


def test_metaworld_successes_name_no_failure():
    success, failure = run_metaworld("reach-v3", expert_then_still(500), 200)
    assert success and failure is None


def test_pusht_failures_are_named_from_ground_truth():
    env = PushTEnv(track="state", max_episode_steps=40)
    observation, _ = env.reset(seed=SEED)
    for _ in range(40):  # commanding the pusher where it stands: the block is never touched
        observation, _, _, truncated, info = env.step(observation["observation.state"])
    assert truncated and info["failure"] == "never-reached"
    env.reset(seed=SEED)
    rng = np.random.default_rng(0)
    for _ in range(40):
        _, _, _, truncated, info = env.step(rng.uniform(0, 512, 2))
    assert truncated and info["failure"] == "misplaced"
    env.close()


@pytest.mark.parametrize("name", SUITES)
def test_every_suite_defines_its_failure_tags(name):
    tags = get_suite(name).failure_tags
    assert "never-reached" in tags and all(isinstance(text, str) and len(text) > 20 for text in tags.values())
