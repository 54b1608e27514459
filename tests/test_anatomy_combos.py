"""Every supported (substrate, backbone, coupling) combination builds, trains a few steps on real MetaWorld
demonstrations, acts, predicts its future, and survives a save/load round trip with identical seeded actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import train_on_fixed_batch, train_on_windows
from wam.anatomy import Backbone, Coupling, SpecError, Substrate, WAMSpec
from wam.couplings.planners import PlannerConfig
from wam.data.lerobot import LeRobotDataset
from wam.eval.offline import offline_screens
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
    train_on_windows(model, windows, steps=3, batch_size=8)
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


@pytest.mark.parametrize("backbone", [b.value for b in Backbone])
def test_separate_inverse_dynamics_head_trains_alone_when_the_predictor_is_frozen(backbone, ds):
    substrate = "feature-teacher" if backbone == "jepa" else "pixel-decoded"
    model = build_model("fast-wam", ds, {"substrate": substrate, "backbone": backbone, "coupling": "post-head"},
                        d_model=32, n_layers=1, n_heads=2, inference_steps=2, post_head="separate")
    windows = model.windows(ds)
    batch = windows.sample(8, np.random.default_rng(0))
    loss, info = model.loss(batch)
    assert set(info) == {"loss/action", f"loss/future.{substrate}"}
    model.freeze_predictor()
    before = {n: p.clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.loss(batch)[0].backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("coupling.head.") for n in changed)
    model.eval()
    assert model.act(windows.batch(np.arange(2)), inference=model.inference(future="predict")).shape == (2, 16, 4)


def test_freezing_needs_a_separate_head(ds):
    model = build_model("fast-wam", ds, d_model=32, n_layers=1)
    with pytest.raises(SpecError, match="post_head='separate'"):
        model.freeze_predictor()
    with pytest.raises(SpecError, match="option of coupling 'post-head'"):
        build_model("fast-wam", ds, {"coupling": "joint"}, post_head="separate")


@pytest.mark.e2e
def test_freeze_predictor_fine_tunes_only_the_head(vision_data, tmp_path):
    from safetensors.torch import load_file

    from wam.train.loop import TrainConfig, train

    common = dict(data=vision_data, steps=2, batch_size=4, device="cpu", log_every=1)
    train(TrainConfig(out=tmp_path / "a", coupling="post-head", substrate="pixel-decoded", post_head="separate",
                      **common))
    train(TrainConfig(out=tmp_path / "b", init_from=tmp_path / "a", freeze_predictor=True, **common))
    a = load_file(tmp_path / "a/model/model.safetensors")
    b = load_file(tmp_path / "b/model/model.safetensors")
    changed = {n for n in a if not torch.equal(a[n], b[n])}
    assert changed and all(n.startswith("coupling.head.") for n in changed)


@pytest.mark.parametrize("deployment, k", [("open-loop", 16), ("chunked", 8), ("single-step", 1)])
def test_deployment_sets_how_many_actions_run_per_call(deployment, k, ds):
    from wam.deployment import DeploymentConfig, make_policy

    model = tiny({"substrate": "geometric", "coupling": "rollout", "deployment": deployment}, ds)
    policy = make_policy(model)
    assert policy.n_action_steps == k
    if deployment != "chunked":
        with pytest.raises(ValueError, match=f"executes {k} action"):
            make_policy(model, DeploymentConfig(n_action_steps=3))
    batch = model.windows(ds).batch(np.arange(1))
    observation = {key: batch[key][0, -1].numpy() for key in model.observation_keys}
    observation["task"] = batch["task"][0]
    for _ in range(k + 1):
        assert policy.select_action(observation).shape == (4,)
    assert len(policy.call_latencies) == 2 and model.coupling._last_plan is not None
    policy.reset()
    assert model.coupling._last_plan is None  # a new episode forgets the planner's last plan


LEARNING = [  # every backbone, substrate and coupling at least once
    *[("pixel-decoded", b, "joint") for b in ("diffusion", "autoregressive", "hybrid", "vlm")],
    ("feature-teacher", "jepa", "joint"),
    *[(s, "diffusion", "post-head") for s in ("pixel-latent", "feature-encoder-only", "feature-tap",
                                              "feature-teacher", "feature-token", "geometric", "affordance")],
    ("feature-token", "vlm", "post-head"),
    ("geometric", "diffusion", "rollout"),
    ("none", "diffusion", "none"),
]


@pytest.mark.parametrize("substrate, backbone, coupling", LEARNING, ids=["/".join(c) for c in LEARNING])
def test_loss_falls_on_a_fixed_batch(substrate, backbone, coupling, ds):
    model = tiny({"substrate": substrate, "backbone": backbone, "coupling": coupling}, ds)
    model.add_caches(ds)
    batch = model.windows(ds).batch(np.arange(0, 64, 4))
    before, after, _ = train_on_fixed_batch(model, batch, 40)
    assert after < 0.7 * before


@pytest.mark.parametrize("granularity", ["chunk", "step"])
@pytest.mark.parametrize("proposal", ["prior", "noise", "uniform"])
@pytest.mark.parametrize("objective", ["progress", "goal", "success"])
def test_rollout_plans_with_every_proposal_and_objective(granularity, proposal, objective, ds):
    from wam.train.loop import goal_targets

    model = tiny({"substrate": "geometric", "coupling": "rollout"}, ds)
    knobs = model.inference(planner=PlannerConfig(granularity=granularity, proposal=proposal, objective=objective,
                                                  candidates=4, iterations=2, elites=2))
    model.eval()
    windows = model.windows(ds)
    model.coupling.set_goals(goal_targets(model, windows))
    assert model.coupling.goal_0.abs().sum() > 0  # goals were fitted from the demonstrations' last frames
    batch = windows.batch(np.arange(2))
    proposals = model.coupling.propose(model.backbone, model._context(batch), model._call(knobs), 4,
                                       torch.Generator().manual_seed(0))
    first = model.act(batch, generator=torch.Generator().manual_seed(0), inference=knobs)
    second = model.act(batch, generator=torch.Generator().manual_seed(0), inference=knobs)  # 'noise': the last plan
    assert first.shape == second.shape == (2, 16, 4)
    if granularity == "step" and proposal == "prior":
        # Only the next action was searched: the rest of the chunk is the first proposal, the prior's sample.
        assert torch.allclose(model.normalizer.normalize("action", first)[:, 1:], proposals[:, 0, 1:], atol=1e-5)


def test_rank_actions_counts_the_proposals_a_chunk_outscores(ds, monkeypatch):
    model = tiny({"substrate": "geometric", "coupling": "rollout"}, ds)
    model.eval()
    batch = model.windows(ds).batch(np.arange(3))
    ranks = model.rank_actions(batch, batch["action"], torch.Generator().manual_seed(0))
    assert ranks.shape == (3,) and ((ranks >= 0) & (ranks <= 1)).all()
    assert 0 <= offline_screens(model, ds, max_windows=8, batch_size=8)["expert_chunk_rank"] <= 1
    # An objective that prefers low first action dimensions: the all-low chunk beats every uniform proposal, the
    # all-high chunk none.
    knobs = model.inference(planner=PlannerConfig(proposal="uniform", candidates=8))
    monkeypatch.setattr(model.coupling, "score_chunks", lambda b, c, s, chunks, task, g=None: -chunks[..., 0].mean(-1))
    low, high = (model.normalizer.unnormalize("action", torch.full_like(batch["action"], v)) for v in (-1.0, 1.0))
    assert model.rank_actions(batch, low, inference=knobs).tolist() == [1.0] * 3
    assert model.rank_actions(batch, high, inference=knobs).tolist() == [0.0] * 3


def test_rank_actions_needs_a_rollout_coupling(ds):
    model = tiny({"substrate": "geometric", "coupling": "joint"}, ds)
    batch = model.windows(ds).batch(np.arange(2))
    with pytest.raises(SpecError, match="rollout coupling"):
        model.rank_actions(batch, batch["action"])
