"""The model as an interactive simulator: ``DreamEnv`` passes gymnasium's checker, keeps its memory flat over a
long dream, refuses models that cannot dream, propagates the hand like MetaWorld does, and ``wam dream`` runs
end to end."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import psutil
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from tests.conftest import assert_one_line_error, wam_cli, wam_refused
from wam.data.lerobot import LeRobotDataset
from wam.deployment.dream import DreamEnv
from wam.envs import get_suite
from wam.envs.metaworld import STATE_KEY
from wam.model import WorldActionModel
from wam.train.loop import build_model

METAWORLD = get_suite("metaworld")

pytestmark = pytest.mark.sim

TASK = "drawer-open-v3"
SIZES = dict(d_model=32, n_layers=1, n_heads=2, inference_steps=2, image_channels=(8, 8, 8, 8))


@pytest.fixture(scope="module")
def ds(vision_data) -> LeRobotDataset:
    return LeRobotDataset.load(vision_data)


@pytest.fixture(scope="module")
def dreamer(ds) -> WorldActionModel:
    """A tiny pixel-decoded / hybrid / joint model, trained a few steps: enough to dream, not to dream well."""
    torch.manual_seed(0)
    model = build_model(None, ds, {"substrate": "pixel-decoded", "backbone": "hybrid", "coupling": "joint"}, **SIZES)
    windows = model.windows(ds)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    model.train()
    for step in range(3):
        loss, _ = model.loss(windows.sample(8, rng), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_dream_env_passes_gymnasium_checks(dreamer):
    env = DreamEnv(dreamer, TASK, max_episode_steps=4)
    check_env(env)
    obs, _ = env.reset(seed=1)
    assert env.action_space.shape == (dreamer.config.future_offsets[0], 4)
    dreamed, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert dreamed in env.observation_space and reward == 0.0 and not terminated and not truncated
    assert not np.array_equal(dreamed["observation.images.corner2"], obs["observation.images.corner2"])
    assert np.array_equal(env.render(), dreamed["observation.images.corner2"])
    # Seeded: the same reset seed and actions dream the same frames.
    chunk = np.full(env.action_space.shape, 0.5, np.float32)
    first = [env.reset(seed=7)[0]] + [env.step(chunk)[0] for _ in range(2)]
    again = [env.reset(seed=7)[0]] + [env.step(chunk)[0] for _ in range(2)]
    for a, b in zip(first, again):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    for _ in range(2):
        truncated = env.step(chunk)[3]
    assert truncated  # after max_episode_steps dream steps
    with pytest.raises(ValueError, match="pass 8 actions per step"):
        env.step(np.zeros(4))
    env.close()


def test_memory_stays_flat_over_a_long_dream(dreamer):
    env = DreamEnv(dreamer, TASK)
    steps = 1000 // env.stride
    env.max_episode_steps = steps
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    process = psutil.Process()
    for i in range(steps):
        if i == 10:  # warmed up: allocator pools and lazily built kernels are in place
            warm = process.memory_info().rss
            start = time.perf_counter()
        *_, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        assert len(env.history) == dreamer.config.n_obs
    growth_mb = (process.memory_info().rss - warm) / 2**20
    per_step_ms = 1e3 * (time.perf_counter() - start) / (steps - 10)
    assert truncated and growth_mb < 20, f"RSS grew {growth_mb:.1f} MB over {steps} dream steps ({per_step_ms:.1f} ms each)"
    env.close()


@pytest.mark.parametrize("spec, message", [
    ({"substrate": "pixel-decoded", "coupling": "post-head"}, "coupling 'post-head' predicts p(s|c), not the p(s|c,a)"),
    ({"substrate": "none", "coupling": "none"}, "substrate 'none' has no pixel decoder"),
    ({"substrate": "geometric", "coupling": "joint"}, "substrate 'geometric' has no pixel decoder"),
])
def test_models_that_cannot_dream_are_refused(spec, message, ds):
    model = build_model(None, ds, spec, **SIZES)
    with pytest.raises(ValueError, match=re.escape(message)):
        DreamEnv(model, TASK)


def test_a_model_with_two_cameras_is_refused(tmp_path):
    """A dream predicts one camera's frames: a model trained in the metaworld-wrist suite (corner2 and the hand's
    camera) cannot be stepped in one, and says which image it would have dreamed."""
    from wam.data.collect import CollectConfig, run_collect

    run_collect(CollectConfig(tasks=TASK, suite="metaworld-wrist", episodes=1, out=tmp_path / "data", workers=1))
    model = build_model(None, LeRobotDataset.load(tmp_path / "data"),
                        {"substrate": "pixel-decoded", "backbone": "hybrid", "coupling": "joint"}, **SIZES)
    assert model.config.image_keys == ["observation.images.corner2", "observation.images.gripperPOV"]
    with pytest.raises(ValueError, match=re.escape("a dream predicts the frames of one (observation.images.corner2)")):
        DreamEnv(model, TASK)


def test_kinematic_hand_tracks_the_real_hand(dreamer):
    """The dream moves the hand as MetaWorld moves its mocap target (0.01 m per unit action and control step, read
    from the simulator), with the hand lagging it: within 1 cm of the real hand over two dream steps."""
    env = DreamEnv(dreamer, TASK)
    assert env.propagator.action_scale == 0.01  # SawyerXYZEnv's action_scale in the installed metaworld
    real = METAWORLD.make_env(TASK)
    observation, _ = real.reset(seed=3)
    expert = METAWORLD.expert(real)
    actions, hands = [], []
    for _ in range(2 * env.stride):
        actions.append(expert.select_action())
        observation, *_ = real.step(actions[-1])
        hands.append(observation[STATE_KEY][:3])
    real.close()
    dreamed = env.reset(seed=3)[0]
    naive = dreamed[STATE_KEY][:3] + env.propagator.action_scale * np.clip(actions, -1, 1)[:, :3].sum(axis=0)
    for i in range(2):
        dreamed = env.step(np.stack(actions[i * env.stride:(i + 1) * env.stride]))[0]
        error = np.linalg.norm(dreamed[STATE_KEY][:3] - hands[(i + 1) * env.stride - 1])
        assert error < 0.01, f"hand {1e3 * error:.1f} mm off after {(i + 1) * env.stride} steps"
    assert np.linalg.norm(naive - hands[-1]) > error  # the lag model beats putting the hand on the target
    env.close()


@pytest.mark.e2e
def test_wam_dream_end_to_end(vision_data, tmp_path):
    run = tmp_path / "run"
    result = wam_cli("train", "--data", vision_data, "--out", run, "--substrate", "pixel-decoded", "--coupling",
                     "joint", "--steps", "3", "--batch-size", "4", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "dream"
    result = wam_cli("dream", "--run", run, "--task", TASK, "--out", out, "--steps", "20", "--policy", "expert",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "PSNR" in result.stdout and "dream_info.json" in result.stdout
    info = json.loads((out / "dream_info.json").read_text())
    stride = info["summary"]["stride"]
    assert [s["horizon"] for s in info["per_step"]] == [stride * i for i in range(1, 20 // stride + 1)]
    assert all(s["mse"] >= 0 and np.isfinite(s["psnr"]) for s in info["per_step"])
    assert info["model"]["spec"]["coupling"] == "joint" and info["memory"]["peak_rss_mb"] > 50
    assert {"cpu", "device"} <= set(info["machine"]) and info["time_per_dream_step_ms"]["mean"] > 0
    assert (out / "dream.mp4").stat().st_size > 1000
    assert_one_line_error(wam_refused("dream", "--run", run, "--task", TASK, "--out", out, "--steps", "3"),
                          "shorter than one dream step (8 control steps)")
