"""Synthetic data (DreamGen's recipe): a trained WAM dreams episodes from real first frames, its own actions or its
inverse dynamics label them, and the dreamed episodes join training at a chosen share; models that cannot dream,
label or learn from dreams are refused with the reason."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import assert_one_line_error, wam_refused
from wam.anatomy import SpecError
from wam.data.check import check_dataset
from wam.data.collect import SYNTHETIC_SEED_BASE
from wam.data.lerobot import DatasetError, LeRobotDataset
from wam.data.mixture import combine
from wam.data.synthetic import SynthesizeConfig, check_synthesizer, run_synthesize
from wam.deployment.dream import DreamEnv
from wam.envs import get_suite
from wam.train.loop import TrainConfig, build_model, train

pytestmark = pytest.mark.sim

TASK = "drawer-open-v3"
METAWORLD = get_suite("metaworld")
IMAGE = METAWORLD.image_key
SIZES = dict(d_model=32, n_layers=1, n_heads=2, inference_steps=2, image_channels=(8, 8, 8, 8))
STEPS = 10


def tiny(ds, spec: dict[str, str], offsets=(1, 8), train_steps: int = 3):
    """A tiny model of ``spec`` trained a few steps: enough to dream and label, not to do either well."""
    torch.manual_seed(0)
    model = build_model(None, ds, spec, future_offsets=offsets, **SIZES)
    if not train_steps:
        return model.eval()
    windows, rng = model.windows(ds), np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(train_steps):
        loss, _ = model.loss(windows.sample(8, rng), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


JOINT = {"substrate": "pixel-decoded", "backbone": "hybrid", "coupling": "joint"}


@pytest.fixture(scope="module")
def ds(vision_data) -> LeRobotDataset:
    return LeRobotDataset.load(vision_data)


@pytest.fixture(scope="module")
def generator_run(ds, tmp_path_factory):
    run = tmp_path_factory.mktemp("generator")
    tiny(ds, JOINT).save(run / "model")
    return run


@pytest.fixture(scope="module")
def synthetic_data(generator_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "inverse"
    run_synthesize(SynthesizeConfig(run=generator_run, tasks=TASK, episodes=2, out=out, steps=STEPS,
                                    labels="inverse", device="cpu"))
    return out


def test_dreamed_episodes_are_a_sound_labelled_dataset(synthetic_data, ds):
    assert check_dataset(synthetic_data) == []
    dreamed = LeRobotDataset.load(synthetic_data)
    assert dreamed.has_actions and dreamed.tasks == [TASK]
    assert [e["length"] for e in dreamed.episodes] == [STEPS, STEPS]
    assert [e["seed"] for e in dreamed.episodes] == [SYNTHETIC_SEED_BASE, SYNTHETIC_SEED_BASE + 1]
    assert all("success" not in e for e in dreamed.episodes)  # a dream has nothing to judge it by
    assert set(dreamed.features) - {"index", "frame_index", "episode_index", "task_index", "timestamp"} == {
        IMAGE, METAWORLD.state_key, "action"}
    info = json.loads((synthetic_data / "meta/info.json").read_text())["wam"]["synthetic"]
    assert info["labels"] == "inverse" and info["spec"]["coupling"] == "joint" and 0 <= info["label_gap"] < 2
    low, high = METAWORLD.action_bounds()
    assert (dreamed.frames["action"] >= low).all() and (dreamed.frames["action"] <= high).all()
    # Each episode starts from the real first frame of its seed; what follows is dreamed.
    env = METAWORLD.make_env(TASK, track="vision", image_size=ds.frames[IMAGE].shape[1])
    first, _ = env.reset(seed=SYNTHETIC_SEED_BASE + 1)
    env.close()
    assert np.array_equal(dreamed.frames[IMAGE][STEPS], first[IMAGE])


def test_driving_labels_are_the_actions_that_drove_the_dream(generator_run, tmp_path):
    out = tmp_path / "driving"
    run_synthesize(SynthesizeConfig(run=generator_run, tasks=TASK, episodes=1, out=out, steps=6, device="cpu"))
    dreamed = LeRobotDataset.load(out)
    assert json.loads((out / "meta/info.json").read_text())["wam"]["synthetic"]["label_gap"] is None
    # Replaying the recorded actions in the same dream gives back the recorded frames.
    from wam.model import WorldActionModel

    env = DreamEnv(WorldActionModel.load(generator_run / "model"), TASK, max_episode_steps=6)
    observation, _ = env.reset(seed=SYNTHETIC_SEED_BASE)
    for t, action in enumerate(dreamed.frames["action"]):
        assert np.array_equal(observation[IMAGE], dreamed.frames[IMAGE][t])
        observation, *_ = env.step(action[None])
    env.close()


def test_synthesis_resumes_and_refuses_other_arguments(generator_run, synthetic_data):
    cfg = SynthesizeConfig(run=generator_run, tasks=TASK, episodes=2, out=synthetic_data, steps=STEPS,
                           labels="inverse", device="cpu")
    before = (synthetic_data / "meta/info.json").read_text()
    run_synthesize(cfg)  # complete: nothing is dreamed again
    assert (synthetic_data / "meta/info.json").read_text() == before
    with pytest.raises(DatasetError, match="other arguments"):
        run_synthesize(replace(cfg, steps=STEPS + 1))


def test_models_that_cannot_dream_or_label_are_refused(ds, tmp_path):
    with pytest.raises(ValueError, match="--future-offsets 1 8 16"):
        check_synthesizer(tiny(ds, JOINT, offsets=(8, 16), train_steps=0), "driving")
    serial = tiny(ds, {"substrate": "pixel-latent", "backbone": "autoregressive", "coupling": "joint"},
                  train_steps=0)
    check_synthesizer(serial, "driving")
    with pytest.raises(ValueError, match="generates the action before the future"):
        check_synthesizer(serial, "inverse")
    vla = build_model("vla", ds)
    with pytest.raises(SpecError, match="does not model the action given a future"):
        vla.inverse({})
    run = tmp_path / "vla"
    vla.save(run / "model")
    result = wam_refused("synthesize", "--run", run, "--tasks", TASK, "--episodes", "1", "--out", tmp_path / "o")
    assert_one_line_error(result, "no pixel decoder")


def test_inverse_dynamics_labels_a_window_within_the_action_range(ds):
    model = tiny(ds, JOINT)
    windows = model.windows(ds, video=True)
    chunk = model.inverse(windows.batch(np.arange(4)), torch.Generator().manual_seed(0))
    assert chunk.shape == (4, model.config.horizon, 4) and torch.isfinite(chunk).all()


def test_dreamed_episodes_join_training_at_their_share(vision_data, synthetic_data, ds, tmp_path):
    mixed = combine(ds, synthetic=[LeRobotDataset.load(synthetic_data)])
    dreamed = [e for e in mixed.episodes if e["synthetic"]]
    assert len(dreamed) == 2 and all(e["actions"] and e["source"] == 1 for e in dreamed)
    assert "groundtruth.keypoints_xyz" in mixed.info["wam"]["synthetic_lacks"]
    first_dreamed = dreamed[0]["dataset_from_index"]
    model = build_model("fast-wam", mixed)
    rng = np.random.default_rng(0)
    for share in (0.0, 0.25, 1.0):
        windows = model.windows(mixed, synthetic_share=share)
        windows.batch = lambda positions, w=windows: w.anchors[positions]  # which anchors a batch would hold
        drawn = np.mean(windows.sample(4000, rng) >= first_dreamed)
        assert drawn == share if share in (0.0, 1.0) else abs(drawn - share) < 0.03
    # Video windows never cover dreamed frames: the world model does not learn its own dreams.
    assert model.windows(mixed, video=True).anchors.max() < first_dreamed
    cfg = TrainConfig(data=vision_data, synthetic=(synthetic_data,), out=tmp_path / "run", preset="fast-wam",
                      steps=2, batch_size=4, log_every=1, threads=1, synthetic_share=0.25)
    train(cfg)
    run = json.loads((cfg.out / "train_config.json").read_text())
    assert [(s["kind"], s["episodes"]) for s in run["sources"]] == [("labelled", 4), ("synthetic", 2)]
    assert run["trained_on_episodes"] == 6


def test_models_that_learn_from_ground_truth_refuse_dreams(vision_data, synthetic_data, tmp_path):
    result = wam_refused("train", "--data", vision_data, "--synthetic", synthetic_data, "--preset", "pointworld",
                         "--steps", "1", "--out", tmp_path / "run")
    assert_one_line_error(result, "dreamed episodes hold no", "without --synthetic")
    result = wam_refused("train", "--data", vision_data, "--synthetic", vision_data, "--preset", "fast-wam",
                         "--steps", "1", "--out", tmp_path / "run2")
    assert_one_line_error(result, "is not a synthetic dataset")
