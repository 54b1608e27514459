"""The seed-system presets: each is its census 4-tuple, trains a few steps on real demonstrations and acts in
MetaWorld under its own deployment; the docs table is generated from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import train_on_windows
from wam.data.lerobot import LeRobotDataset
from wam.deployment import DeploymentConfig, StreamingPolicy, make_policy
from wam.envs import get_suite
from wam.eval.properties import causality_leak
from wam.presets.census import census_spec, find_row
from wam.presets.models import PRESETS, preset, presets_markdown
from wam.train.loop import TrainConfig, build_model

METAWORLD = get_suite("metaworld")

ISSUE_PRESETS = ["unipi", "gr-1", "fast-wam", "flare", "pointworld", "aim", "dreamzero", "gigaworld-policy", "lda-1b",
                 "alam", "uwm", "uva", "vpp", "vjepa2-ac", "vla", "world-model-mpc"]


def test_the_seed_systems_and_baselines_are_all_presets():
    assert sorted(PRESETS) == sorted(ISSUE_PRESETS)


@pytest.mark.parametrize("name", [p for p in ISSUE_PRESETS if PRESETS[p].census])
def test_a_census_preset_has_its_census_4_tuple(name):
    assert preset(name)["spec"] == census_spec(find_row(PRESETS[name].census))


def test_docs_table_is_generated_from_the_presets():
    assert (Path(__file__).parents[1] / "docs/presets.md").read_text() == presets_markdown(), \
        "regenerate it: python -m wam.presets.models > docs/presets.md"


def test_command_line_planner_options_change_only_what_they_name():
    cfg = TrainConfig(data=Path("d"), out=Path("o"), preset="world-model-mpc")
    cfg.planner.iterations = 5
    planner = cfg.model_overrides()["planner"]
    assert (planner.iterations, planner.proposal, planner.candidates) == (5, "uniform", 64)


@pytest.fixture(scope="module")
def ds(vision_data):
    return LeRobotDataset.load(vision_data)


@pytest.mark.sim
@pytest.mark.parametrize("name", ISSUE_PRESETS)
def test_preset_trains_and_acts_under_its_own_deployment(name, ds):
    torch.manual_seed(0)
    model = build_model(name, ds, d_model=32, n_layers=1, n_heads=2, inference_steps=2, image_channels=(8, 8, 8, 8),
                        substrate_fit_steps=2)
    for substrate in model.substrates.values():
        substrate.fit(ds, 2)
    model.add_caches(ds)
    windows = model.windows(ds)
    train_on_windows(model, windows, steps=2, batch_size=4)
    model.eval()
    assert causality_leak(model, windows.batch(np.arange(4))) == 0.0  # nothing after the current step is read
    policy = make_policy(model, DeploymentConfig(), seed=0)
    assert policy.knobs()["regime"] == model.config.spec.deployment.value
    if model.config.spec.backbone.value == "autoregressive":  # GR-1 and DreamZero stream through the KV cache
        assert isinstance(policy, StreamingPolicy)
    task = ds.tasks[0]
    env = METAWORLD.make_env(task, track="vision", image_size=64, max_episode_steps=5)
    obs, _ = env.reset(seed=1)
    for _ in range(3):
        obs["task"] = METAWORLD.instruction(task)
        action = policy.select_action(obs)
        assert action.shape == (4,) and np.isfinite(action).all()
        obs, *_ = env.step(action)
    env.close()
