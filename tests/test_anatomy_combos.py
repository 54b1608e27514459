"""Every supported (substrate, backbone, coupling) combination builds, trains a few steps on real MetaWorld
demonstrations, acts, predicts its future, and survives a save/load round trip with identical seeded actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam.anatomy import Backbone, Coupling, SpecError, Substrate, WAMSpec
from wam.data.lerobot import LeRobotDataset
from wam.model import WorldActionModel
from wam.train.loop import build_model

pytestmark = pytest.mark.sim

SUBSTRATES = [s.value for s in Substrate if s is not Substrate.NONE] + ["pixel-decoded+geometric",
                                                                       "pixel-latent+affordance"]


def supported() -> list[tuple[str, str, str]]:
    combos = [("none", b.value, "none") for b in Backbone]
    for substrate in SUBSTRATES:
        for backbone in Backbone:
            for coupling in (Coupling.JOINT, Coupling.POST_HEAD, Coupling.ROLLOUT):
                try:
                    WAMSpec(substrate=substrate, backbone=backbone, coupling=coupling)
                except SpecError:
                    continue
                combos.append((substrate, backbone.value, coupling.value))
    return combos


COMBOS = supported()


def test_the_support_table_is_large():
    # Every substrate under every coupling except the two rules of wam.anatomy (JEPA has no decoder; an
    # encoder-only future cannot score rollouts).
    assert len(COMBOS) > 100


@pytest.fixture(scope="module")
def ds(vision_data):
    return LeRobotDataset.load(vision_data)


def tiny(spec: dict[str, str], ds: LeRobotDataset) -> WorldActionModel:
    torch.manual_seed(0)
    model = build_model("fast-wam", ds, spec, d_model=32, n_layers=1, n_heads=2, inference_steps=2,
                        image_channels=(8, 8, 8, 8), substrate_fit_steps=2,
                        planner={"candidates": 3, "iterations": 2, "elites": 2})
    for substrate in model.substrates.values():
        substrate.fit(ds, 2)
    return model


@pytest.mark.parametrize("substrate, backbone, coupling", COMBOS, ids=["/".join(c) for c in COMBOS])
def test_combination_trains_acts_predicts_and_round_trips(substrate, backbone, coupling, ds, tmp_path):
    model = tiny({"substrate": substrate, "backbone": backbone, "coupling": coupling}, ds)
    model.add_caches(ds)
    windows = model.windows(ds)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for step in range(3):
        loss, info = model.loss(windows.sample(8, rng), step)
        assert torch.isfinite(loss), info
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step()
    model.eval()
    batch = windows.batch(np.arange(2))
    action = model.act(batch, generator=torch.Generator().manual_seed(0))
    assert action.shape == (2, 16, 4) and torch.isfinite(action).all()
    if substrate != "none":
        futures = model.predict(batch, generator=torch.Generator().manual_seed(0))
        assert set(futures) == {s.name for s in model.substrates.values()}
        for s in model.substrates.values():
            assert futures[s.name].shape[:2] == (2, s.stream.length)
        model.decode(futures)  # every decoder accepts what its substrate predicts

    model.save(tmp_path / "m")
    loaded = WorldActionModel.load(tmp_path / "m")
    again = loaded.act(batch, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(action, again, atol=1e-5)
