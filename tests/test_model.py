"""The WorldActionModel contract on both presets: shapes, determinism, save/load, learning, bad checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import train_on_fixed_batch
from wam.anatomy import SpecError, WAMSpec
from wam.data.lerobot import LeRobotDataset
from wam.data.windows import WindowDataset
from wam.model import CheckpointError, ModelConfig, WorldActionModel
from wam.train.loop import build_model, check_compatible

pytestmark = pytest.mark.sim
PRESETS = ["vla", "fast-wam"]


def small(preset: str, ds: LeRobotDataset, **kw) -> WorldActionModel:
    torch.manual_seed(0)
    return build_model(preset, ds, d_model=32, n_layers=1, n_heads=2, inference_steps=3, **kw)


def windows(model: WorldActionModel, ds: LeRobotDataset) -> WindowDataset:
    return model.windows(ds)


@pytest.fixture(scope="module")
def ds(vision_data):
    return LeRobotDataset.load(vision_data)


@pytest.mark.parametrize("preset", PRESETS)
def test_shapes_of_act_predict_score(preset, ds):
    model = small(preset, ds).eval()
    batch = windows(model, ds).batch(np.arange(3))
    action = model.act(batch)
    assert action.shape == (3, 16, 4) and torch.isfinite(action).all()
    # Actions come back in environment units: the normalizer's [-1, 1] maps onto the data's range.
    lo, hi = ds.stats["action"]["min"], ds.stats["action"]["max"]
    assert (action >= torch.tensor(lo) - 1e-4).all() and (action <= torch.tensor(hi) + 1e-4).all()
    scores = model.score(batch, torch.randn(3, 5, 16, 4).clamp(-1, 1))
    assert scores.shape == (3, 5)
    if preset == "fast-wam":
        assert model.predict(batch)["future.feature-encoder-only"].shape == (3, 4, 32)
        with pytest.raises(SpecError, match="p\\(s\\|c,a\\)"):
            model.predict(batch, actions=action)
    else:
        with pytest.raises(SpecError, match="predicts no future"):
            model.predict(batch)


@pytest.mark.parametrize("preset", PRESETS)
def test_seeded_sampling_is_deterministic(preset, ds):
    model = small(preset, ds).eval()
    batch = windows(model, ds).batch(np.arange(2))
    a = model.act(batch, generator=torch.Generator().manual_seed(3))
    b = model.act(batch, generator=torch.Generator().manual_seed(3))
    c = model.act(batch, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("preset", PRESETS)
def test_save_load_round_trip(preset, ds, tmp_path):
    model = small(preset, ds).eval()
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors"}
    loaded = WorldActionModel.load(tmp_path / "m")
    assert loaded.config == model.config
    batch = windows(model, ds).batch(np.arange(2))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(model.act(batch, generator=g()), loaded.act(batch, generator=g()))


@pytest.mark.parametrize("preset", PRESETS)
def test_loss_falls_on_a_fixed_batch(preset, ds):
    model = small(preset, ds, dropout=0.0, augment_pad=0)
    batch = windows(model, ds).batch(np.arange(0, 64, 4))
    before, after, info = train_on_fixed_batch(model, batch, 60)
    assert after < 0.6 * before
    assert set(info) == ({"loss/action", "loss/future.feature-encoder-only"} if preset == "fast-wam" else {"loss/action"})
    # The trained model scores the demonstrated chunk above random ones.
    model.eval()
    random_chunks = torch.rand(len(batch["task"]), 4, 16, 4) * 2 - 1
    scores = model.score(batch, torch.cat([batch["action"][:, None], random_chunks], dim=1))
    assert (scores[:, 0] > scores[:, 1:].max(dim=1).values).float().mean() > 0.8


def test_fast_wam_future_branch_is_skipped_at_inference(ds):
    """Skipping the future must not call the future stream at all; predicting it is the slower imagine-then-act path."""
    model = small("fast-wam", ds).eval()
    batch = windows(model, ds).batch(np.arange(2))
    seen: list[tuple[str, ...]] = []
    original = model.backbone.forward

    def spy(context, streams, timesteps, hide=None):
        seen.append(tuple(streams))
        return original(context, streams, timesteps, hide)

    model.backbone.forward = spy
    model.act(batch)
    assert seen and all(s == ("action",) for s in seen)
    seen.clear()
    model.act(batch, inference=model.inference(future="predict"))
    assert ("future.feature-encoder-only",) in seen and ("future.feature-encoder-only", "action") in seen
    assert model.config.future_at_inference == "skip", "a call's knobs never change the model's config"
    with pytest.raises(SpecError, match="no future stream"):
        small("vla", ds).inference(future="predict")


def test_sampler_steps_are_refused_where_nothing_is_sampled_in_steps(ds):
    """--inference-steps changes a diffusion backbone's call; on a regression backbone it would change nothing, so it
    is refused instead of ignored."""
    assert small("vla", ds).inference(inference_steps=7).inference_steps == 7
    with pytest.raises(SpecError, match="backbone 'jepa' samples nothing in steps"):
        small("flare", ds).inference(inference_steps=7)


def test_a_switched_off_future_loss_leaves_the_future_untrained_and_trains_the_action(ds):
    """future_weight=0 (the no-future-loss recipe): the head that predicts the future receives no gradient (how the
    action reads a given future still learns), the action's weights do; a model whose action reads its predicted
    future refuses it."""
    model = small("fast-wam", ds, dropout=0.0, augment_pad=0, future_weight=0.0)
    future = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("backbone.head.future")}
    action = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("backbone.head.action")}
    assert future and action
    batch = windows(model, ds).batch(np.arange(0, 64, 4))
    before, after, info = train_on_fixed_batch(model, batch, 10)
    assert after < before
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in future.items())
    assert any(not torch.equal(params[n], p) for n, p in action.items())
    assert info["loss/future.feature-encoder-only"] >= 0  # still measured, weighted by nothing
    for knobs in (dict(future_at_inference="predict"), dict(substrate_first_steps=10)):
        with pytest.raises(SpecError, match="future_weight=0 leaves the future untrained"):
            ModelConfig(future_weight=0.0, **knobs)
    with pytest.raises(SpecError, match="substrate 'none', coupling 'none'"):
        small("vla", ds, future_weight=0.0)


def test_truncated_and_missing_checkpoints(ds, tmp_path):
    model = small("vla", ds)
    model.save(tmp_path / "m")
    weights = tmp_path / "m/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        WorldActionModel.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="is missing"):
        WorldActionModel.load(tmp_path / "nowhere")
    (tmp_path / "m/config.json").write_text('{"spec": {"substrate": "none", "coupling": "none"}, "colour": 1}')
    with pytest.raises(CheckpointError, match="unknown keys \\['colour'\\]"):
        WorldActionModel.load(tmp_path / "m")


def test_dataset_must_match_model(ds, state_data):
    model = small("vla", ds)
    with pytest.raises(ValueError, match="observation.images.corner2"):
        check_compatible(model, LeRobotDataset.load(state_data))


def test_config_rejects_inconsistent_knobs():
    with pytest.raises(SpecError, match="needs future_offsets"):
        ModelConfig(future_offsets=())
    with pytest.raises(SpecError, match="n_action_steps"):
        ModelConfig(n_action_steps=20, horizon=16)
    with pytest.raises(SpecError, match=r"image_keypoints=-1 is out of range: it must lie in \[0, 256\]"):
        ModelConfig(image_keypoints=-1)
    with pytest.raises(SpecError, match="image_keypoints=32 reads one token per image; it needs image_tokens=1, "
                                        "not 16"):
        ModelConfig(image_keypoints=32, image_tokens=16)
    jepa = WAMSpec(substrate="feature-encoder-only", coupling="joint", backbone="jepa", deployment="chunked")
    with pytest.raises(SpecError, match="parameterization='flow' would change nothing: backbone 'jepa'"):
        ModelConfig(spec=jepa, parameterization="flow")
    separate = WAMSpec(substrate="feature-encoder-only", coupling="post-head", backbone="jepa", deployment="chunked")
    assert ModelConfig(spec=separate, post_head="separate", parameterization="flow").parameterization == "flow"



def test_random_shift_moves_all_frames_of_a_sample_together():
    from wam.nn.layers import random_shift

    torch.manual_seed(0)
    frames = torch.rand(4, 1, 3, 16, 16).repeat(1, 3, 1, 1, 1)  # three identical frames per sample
    shifted = random_shift(frames, pad=2)
    assert shifted.shape == frames.shape
    assert torch.equal(shifted[:, 0], shifted[:, 1]) and torch.equal(shifted[:, 1], shifted[:, 2])
    assert not torch.equal(shifted, frames)  # with 25 possible offsets per sample, some sample moved
    assert random_shift(frames, pad=0) is frames


def test_colour_jitter_changes_each_sample_alike_on_every_frame_and_only_in_training(ds):
    from wam.nn.layers import colour_jitter

    torch.manual_seed(0)
    frames = (torch.rand(4, 1, 16, 16, 3) * 255).to(torch.uint8).repeat(1, 3, 1, 1, 1)  # [B, T, H, W, C]
    jittered = colour_jitter(frames, 0.4)
    assert jittered.shape == frames.shape and 0 <= jittered.min() and jittered.max() <= 255
    assert torch.equal(jittered[:, 0], jittered[:, 1]) and torch.equal(jittered[:, 1], jittered[:, 2])
    change = (jittered - frames.float()).abs().mean(dim=(1, 2, 3, 4))
    assert (change > 1).all() and change.std() > 0.1  # every sample changed, each by its own draw

    model = small("vla", ds, augment_colour=0.4)
    batch = windows(model, ds).batch(np.arange(2))
    key = next(k for k in model.observation_keys if "image" in k)
    model.eval()
    plain = model.normalize_observations(batch, future=False)[key]
    model.train()
    assert not torch.allclose(model.normalize_observations(batch, future=False)[key], plain)


@pytest.mark.parametrize("axis, value", [("substrate", "geometric"), ("backbone", "jepa"), ("coupling", "rollout")])
def test_an_unregistered_component_is_refused_not_replaced(ds, monkeypatch, axis, value):
    """Every anatomy value is built by its own registry entry; without one the model is refused, not built with
    another family (the registries replaced if-chains whose last branch caught everything)."""
    from wam.anatomy import Backbone, Coupling, Substrate
    from wam.backbones import BACKBONES
    from wam.couplings import COUPLINGS
    from wam.substrates import SUBSTRATES

    registry, enum = {"substrate": (SUBSTRATES, Substrate), "backbone": (BACKBONES, Backbone),
                      "coupling": (COUPLINGS, Coupling)}[axis]
    monkeypatch.delitem(registry, enum(value))
    spec = {"substrate": "feature-teacher", "coupling": "rollout", "backbone": "jepa", **{axis: value}}
    if axis == "substrate":
        spec = {"substrate": value, "coupling": "joint", "backbone": "diffusion"}
    with pytest.raises(SpecError, match=f"{axis} '{value}' has no registered implementation"):
        build_model(None, ds, spec, d_model=32, n_layers=1, n_heads=2)


def test_every_anatomy_value_is_registered():
    from wam.anatomy import BACKBONE_CAPABILITIES, Backbone, Coupling, Substrate
    from wam.backbones import BACKBONES
    from wam.couplings import COUPLINGS
    from wam.substrates import SUBSTRATES

    assert set(SUBSTRATES) == set(Substrate) - {Substrate.NONE}
    assert all(cls.kind is kind for kind, cls in SUBSTRATES.items())
    assert set(BACKBONES) == set(BACKBONE_CAPABILITIES) == set(Backbone) and set(COUPLINGS) == set(Coupling)
