"""Test-time adaptation on real models in real MetaWorld episodes: the objective (future or inverse dynamics) on the
episode's own windows falls, the windows hold what the episode showed and did, the loaded model never changes,
every episode starts from the trained weights (so outcomes do not depend on the order or the batching of
episodes), and models that cannot adapt are refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, small_trained_model, wam_refused
from wam.data.lerobot import LeRobotDataset
from wam.deployment import AdaptingPolicy, DeploymentConfig, make_policy
from wam.deployment.adaptation import Adaptation
from wam.envs import get_suite
from wam.eval.config import EvalConfig
from wam.eval.runner import run_closed_loop

pytestmark = pytest.mark.sim
METAWORLD = get_suite("metaworld")
TASK = "drawer-open-v3"


def small(ds: LeRobotDataset, preset: str):
    return small_trained_model(ds, preset, steps=10)


@pytest.fixture(scope="module")
def ds(vision_data):
    return LeRobotDataset.load(vision_data)


@pytest.fixture(scope="module")
def flare(ds):
    return small(ds, "flare")


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def run_steps(policy, steps: int, seed: int = 7) -> None:
    env = METAWORLD.make_env(TASK, track="vision", image_size=64, shift="camera=strong")
    policy.reset(seed=seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        obs["task"] = METAWORLD.instruction(TASK)
        obs, *_ = env.step(policy.select_action(obs))
    env.close()


@pytest.mark.parametrize("objective", ["future", "inverse"])
def test_adaptation_lowers_its_loss_and_leaves_the_loaded_model_as_trained(flare, objective):
    trained = weights(flare)
    policy = AdaptingPolicy(flare, Adaptation(steps=1, lr=1e-3, windows=8, objective=objective), seed=0)
    run_steps(policy, 40)  # replans at 0, 8, ..., 32: futures (8, 16) observed and chunks of 16 executed from 16 on
    assert len(policy.adaptation_losses) == 3
    batch = policy._windows()  # after 40 steps: the newest window is at step 23, its last future at 39
    assert batch["observation.state"].shape[:2] == (8, flare.config.n_obs)
    np.testing.assert_array_equal(batch["future.observation.state"][-1, -1], policy._frames[39]["observation.state"])
    np.testing.assert_array_equal(batch["observation.state"][-1, -1], policy._frames[23]["observation.state"])
    if objective == "inverse":
        np.testing.assert_array_equal(batch["action"][-1], np.stack(policy._actions[23:39]))
    loss_of = policy.model.video_loss if objective == "future" else policy.model.inverse_loss

    def loss() -> float:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            return float(loss_of(batch)[0])

    before = loss()
    policy.adaptation = Adaptation(steps=20, lr=1e-3, windows=8, objective=objective)
    policy._adapt()
    assert loss() < 0.9 * before
    assert all(torch.equal(v, trained[k]) for k, v in flare.state_dict().items())  # the loaded model: untouched
    adapted = weights(policy.model.encoder)
    assert any(not torch.equal(adapted[k], v) for k, v in policy._trained.items())
    # Only the observation encoder adapts.
    assert all(torch.equal(v, trained[k]) for k, v in policy.model.state_dict().items() if not k.startswith("encoder."))
    policy.reset(seed=1)
    assert all(torch.equal(v, policy._trained[k]) for k, v in policy.model.encoder.state_dict().items())


def test_adapted_episodes_do_not_depend_on_order_or_batching(vision_data, flare, tmp_path):
    flare.save(tmp_path / "run" / "model")
    common = dict(run=tmp_path / "run", tasks=TASK, episodes=3, max_steps=40,
                  deploy=DeploymentConfig(adapt_steps=2, adapt_lr=1e-3), shift="camera=strong")
    one = run_closed_loop(EvalConfig(out=tmp_path / "one", envs=1, **common))
    many = run_closed_loop(EvalConfig(out=tmp_path / "many", envs=3, **common))
    last = run_closed_loop(EvalConfig(out=tmp_path / "last", envs=1, seed=2, **{**common, "episodes": 1}))
    rewards = [e["sum_reward"] for e in one["per_episode"]]
    np.testing.assert_allclose([e["sum_reward"] for e in many["per_episode"]], rewards, rtol=1e-5)
    np.testing.assert_allclose(last["per_episode"][0]["sum_reward"], rewards[2], rtol=1e-5)
    assert one["budget"]["episodes_per_call"] == many["budget"]["episodes_per_call"] == 1.0  # never batched
    adaptation = one["model"]["deployment"]["adaptation"]
    assert (adaptation["steps"], adaptation["lr"], adaptation["windows"], adaptation["objective"]) == (2, 1e-3, 8,
                                                                                                      "future")
    losses = [e["adaptation_loss"] for e in many["per_episode"]]  # each episode's own, whichever slot played it
    assert all(loss > 0 for loss in losses)
    np.testing.assert_allclose(losses, [e["adaptation_loss"] for e in one["per_episode"]], rtol=1e-4)
    plain = run_closed_loop(EvalConfig(out=tmp_path / "plain", envs=1, **{**common, "deploy": DeploymentConfig()}))
    assert [e["sum_reward"] for e in plain["per_episode"]] != rewards  # adapting changed what the robot did


@pytest.mark.parametrize("preset, objective, reason", [
    ("vla", "future", "predicts no future"), ("world-model-mpc", "future", "needs the action labels"),
    ("uwm", "future", "cached from the training data"), ("world-model-mpc", "inverse", "no inverse dynamics"),
    ("gr-1", "inverse", "generates the action before the future")])
def test_models_that_cannot_adapt_are_refused(ds, preset, objective, reason):
    with pytest.raises(ValueError, match=reason):
        make_policy(small(ds, preset), DeploymentConfig("chunked", adapt_steps=1, adapt_objective=objective))


def test_adaptation_needs_a_fixed_replanning_period(flare):
    for cfg in (DeploymentConfig(adapt_steps=1, surprise=0.5), DeploymentConfig(adapt_steps=1, deployment="single-step")):
        with pytest.raises(ValueError, match="chunked or open-loop"):
            make_policy(flare, cfg)


def test_wam_eval_refuses_adapting_a_vla_in_one_line(ds, tmp_path):
    small(ds, "vla").save(tmp_path / "run" / "model")
    result = wam_refused("eval", "--run", str(tmp_path / "run"), "--tasks", TASK, "--episodes", "1",
                         "--out", str(tmp_path / "eval"), "--adapt-steps", "1")
    assert_one_line_error(result, "cannot adapt at test time")
    assert not (tmp_path / "eval" / "eval_info.json").exists()
