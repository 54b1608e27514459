"""Contracts of the anatomy's components in isolation: backbones, substrates, couplings and planners."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wam.backbones import AutoregressiveBackbone, DiffusionBackbone, HybridBackbone, JEPABackbone, Stream
from wam.backbones.vlm import VLMBackbone
from wam.couplings.joint import Joint
from wam.couplings.planners import PLANNERS, PlannerConfig
from wam.nn.layers import ImageEncoder
from wam.nn.transformer import Block, Dropout, KVCache
from wam.substrates.autoencoder import AutoencoderConfig

CTX, D = 3, 32


def context(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, CTX, D, generator=torch.Generator().manual_seed(seed))


def streams(discrete: bool = False) -> dict[str, Stream]:
    future = Stream(5, 0, vocab=7) if discrete else Stream(5, 6)
    return {"action": Stream(4, 2, clip=True), "future": future}


@pytest.mark.parametrize("discrete", [False, True])
def test_autoregressive_cache_matches_the_teacher_forced_pass(discrete):
    """Tokens generated one at a time with the KV cache are what a full causal pass over them predicts."""
    torch.manual_seed(0)
    backbone = AutoregressiveBackbone(D, 2, 2, CTX, streams(discrete), {"action": ("future",)},
                                      dropout=0.0, order=("future", "action")).eval()
    ctx = context()
    out = backbone.sample(ctx, ("future", "action"), steps=1)
    hidden, spans = backbone.hidden(ctx, out)
    for name in ("future", "action"):
        lo, hi = spans[name]
        prediction = backbone.read_out(name, hidden[:, lo:hi - 1])
        if discrete and name == "future":
            assert torch.equal(prediction.argmax(-1), out[name])
        else:
            expected = prediction.clamp(-1, 1) if name == "action" else prediction
            assert torch.allclose(expected, out[name], atol=1e-5)


def test_kv_cache_buffers_behave_like_concatenation():
    # A sliding window with rollbacks, long enough to compact and grow the buffers several times.
    torch.manual_seed(0)
    cache, reference = KVCache(2), [torch.zeros(1, 2, 0, 4) for _ in range(2)]
    capacities = []
    for tick in range(40):
        new = torch.randn(1, 2, 1 + tick % 3 + (5 if tick == 20 else 0), 4)
        for layer in range(2):
            keys, values = cache.extend(layer, new, -new)
            reference[layer] = torch.cat([reference[layer], new], dim=2)
            assert torch.equal(keys, reference[layer]) and torch.equal(values, -reference[layer])
        if tick % 2:
            cache.truncate(len(cache) - 1)
            reference = [r[:, :, :-1] for r in reference]
        if len(cache) > 6:
            cache.drop_front(2)
            reference = [r[:, :, 2:] for r in reference]
        assert len(cache) == reference[0].shape[2]
        capacities.append(cache.nbytes())
    assert max(capacities[25:]) == capacities[-1]  # bounded once the window is full


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_dropout_drops_at_its_rate_keeps_the_mean_and_follows_the_seed(p):
    drop = Dropout(p)
    x = torch.ones(200, 1000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - p) < 0.005  # 200k draws: the rate to within 0.5 points
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))  # inverted: the mean is kept
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes through the kept entries, scaled alike
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # torch's generator decides: a seeded step draws the same mask
    assert not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0)(x), x)
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_attention_written_out_for_dropout_matches_the_fused_kernel():
    # Training with dropout attends through the written-out path; with dropout switched off it must equal SDPA.
    torch.manual_seed(0)
    block = Block(32, 4, dropout=0.1).train()
    q, k, v = (torch.randn(3, 4, 7, 8) for _ in range(3))
    mask = torch.rand(3, 1, 7, 7) > 0.3
    mask |= torch.eye(7, dtype=torch.bool)  # every token sees itself, as stream_mask guarantees
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    block.drop.p = 0.0  # the written-out path, with a dropout that keeps everything
    assert torch.allclose(block.attend(q, k, v, mask), fused, atol=1e-6)
    block.drop.p = 0.1
    assert not torch.allclose(block.attend(q, k, v, mask), fused, atol=1e-3)  # dropped at training time
    assert torch.allclose(block.eval().attend(q, k, v, mask), fused, atol=1e-6)


def test_autoregressive_generation_without_a_read_stream_ignores_it():
    torch.manual_seed(0)
    backbone = AutoregressiveBackbone(D, 1, 2, CTX, streams(), {"action": ("future",)}, dropout=0.0,
                                      order=("future", "action")).eval()
    ctx = context()
    alone = backbone.sample(ctx, ("action",))["action"]
    # With the future hidden from the action in the teacher-forced pass, the action predictions are the same.
    values = {"future": torch.randn(2, 5, 6), "action": alone}
    hidden, spans = backbone.hidden(ctx, values, hide={("action", "future"): torch.ones(2, dtype=torch.bool)})
    lo, hi = spans["action"]
    assert torch.allclose(backbone.read_out("action", hidden[:, lo:hi - 1]).clamp(-1, 1), alone, atol=1e-5)


@pytest.mark.parametrize("parameterization", ["epsilon", "sample", "flow"])
def test_diffusion_samples_are_seeded_clipped_and_truncatable(parameterization):
    torch.manual_seed(0)
    backbone = DiffusionBackbone(D, 1, 2, CTX, streams(), {"action": ("future",), "future": ("action",)},
                                 parameterization=parameterization, dropout=0.0).eval()
    ctx = context()
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    a = backbone.sample(ctx, ("future", "action"), 4, generator=g())
    b = backbone.sample(ctx, ("future", "action"), 4, generator=g())
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert a["action"].abs().max() <= 1 and a["future"].shape == (2, 5, 6)
    levels: list[float] = []
    original = backbone.forward

    def spy(ctx, values, lv, hide=None):
        levels.append(float(lv["future"][0]))
        return original(ctx, values, lv, hide)

    backbone.forward = spy
    backbone.sample(ctx, ("future", "action"), 4, generator=g(), partial={"future": 1})
    # After its one step the future stays at the level it reached while the action keeps denoising.
    assert len(levels) == 4 and levels[0] > levels[1] > 0 and levels[1] == levels[2] == levels[3]


def test_regress_streams_are_one_pass_taps():
    torch.manual_seed(0)
    tap = {"action": Stream(4, 2, clip=True), "future": Stream(5, 6, regress=True)}
    backbone = DiffusionBackbone(D, 1, 2, CTX, tap, {"action": ("future",)}, dropout=0.0).eval()
    calls = []
    original = backbone.forward
    backbone.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    out = backbone.sample(context(), ("future",), 10)
    assert len(calls) == 1 and out["future"].shape == (2, 5, 6)
    # The tap's value is never read: the same context gives the same prediction whatever the input values.
    backbone.forward = original
    lv = {"future": torch.zeros(2)}
    x1 = backbone(context(), {"future": torch.randn(2, 5, 6)}, lv)["future"]
    x2 = backbone(context(), {"future": torch.randn(2, 5, 6)}, lv)["future"]
    assert torch.allclose(x1, x2)


def test_hybrid_runs_its_trunk_once_per_call():
    torch.manual_seed(0)
    backbone = HybridBackbone(D, 1, 2, CTX, streams(), {"action": ("future",)}, dropout=0.0).eval()
    calls = []
    original = backbone.trunk.forward
    backbone.trunk.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    out = backbone.sample(context(), ("future", "action"), 8)
    assert len(calls) == 1 and out["action"].abs().max() <= 1


def test_jepa_collapse_guard_penalizes_constant_predictions():
    torch.manual_seed(0)
    backbone = JEPABackbone(D, 1, 2, CTX, streams(), {"action": ("future",)}, dropout=0.0)
    target = torch.zeros(8, 5, 6)
    backbone.head["future"].weight.data.zero_()
    backbone.head["future"].bias.data.zero_()
    constant = backbone._head_loss("future", torch.randn(8, 5, D), target)
    assert constant.item() == pytest.approx(1.0)  # zero regression error, full hinge: std 0 < 1 in every dim


def test_vlm_bins_actions_and_acts_through_its_expert():
    torch.manual_seed(0)
    backbone = VLMBackbone(D, 1, 2, CTX, streams(discrete=True), {"action": ("future",)}, order=("future", "action"),
                           action_bins=33, expert_layers=1, dropout=0.0).eval()
    action = torch.rand(2, 4, 2) * 2 - 1
    ids = backbone.tokenize(action)
    assert ids.shape == (2, 8) and ids.min() >= 0 and ids.max() < 33
    assert ((ids.view(2, 4, 2).float() / 32 * 2 - 1) - action).abs().max() <= 1 / 32 + 1e-6
    losses = backbone.loss(context(), {"future": torch.randint(0, 7, (2, 5)), "action": action})
    assert set(losses) == {"future", "action_tokens", "action"}
    out = backbone.sample(context(), ("future", "action"), 3)
    assert out["future"].dtype == torch.long and out["action"].shape == (2, 4, 2)


def test_substrate_first_schedule():
    coupling = Joint(("future",), substrate_first_steps=100)
    assert [coupling.action_weight(s) for s in (0, 100, 150, 200, 10_000)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert coupling.action_weight(None) == 1.0 and Joint(("future",)).action_weight(0) == 1.0


@pytest.mark.parametrize("planner", sorted(PLANNERS))
def test_planners_climb_a_known_objective(planner):
    target = torch.full((4, 2), 0.5)

    def evaluate(candidates):  # [B, N, H, d] -> [B, N]
        return -(candidates - target).pow(2).flatten(2).sum(-1)

    g = torch.Generator().manual_seed(0)
    initial = torch.rand(3, 32, 4, 2, generator=g) * 2 - 1
    cfg = PlannerConfig(planner=planner, candidates=32, iterations=4, elites=6, noise_std=0.1, temperature=0.05)
    plan = PLANNERS[planner](initial, evaluate, cfg, g)
    assert plan.shape == (3, 4, 2)
    best_initial = evaluate(initial).max(1).values
    assert (evaluate(plan[:, None])[:, 0] >= best_initial - 0.3).all()
    assert (evaluate(plan[:, None])[:, 0] > evaluate(initial).mean(1)).all()


@pytest.fixture(scope="module")
def ds(vision_data):
    from wam.data.lerobot import LeRobotDataset

    return LeRobotDataset.load(vision_data)


def test_decoders_invert_the_targets(ds):
    from wam.substrates.geometric import AffordanceMaps, KeypointTracks
    from wam.substrates.pixel import DecodedFrames
    from wam.train.loop import build_model

    model = build_model("fast-wam", ds, {"substrate": "pixel-decoded+geometric+affordance", "coupling": "joint"},
                        d_model=32, n_layers=1)
    for s in model.substrates.values():
        s.fit(ds, 1)
    batch = model.windows(ds).batch(np.arange(0, 40, 5))
    _, targets = model.targets(batch)
    subs = {type(s): s for s in model.substrates.values()}
    frames = subs[DecodedFrames].decode(targets["future.pixel-decoded"])["frames"]
    real = batch["future.observation.images.corner2"].permute(0, 1, 4, 2, 3).float() / 255
    assert torch.allclose(frames, real, atol=1e-5)
    kp = subs[KeypointTracks].decode(targets["future.geometric"])
    assert torch.allclose(kp["keypoints_xyz"], batch["future.groundtruth.keypoints_xyz"], atol=1e-4)
    flow = batch["future.groundtruth.keypoints_uv"] - batch["anchor.groundtruth.keypoints_uv"][:, None]
    assert torch.allclose(kp["flow_uv"], flow, atol=1e-3)
    maps = subs[AffordanceMaps].decode(targets["future.affordance"])["maps"]  # [B, F, 3, 16, 16]
    goal_uv = batch["future.groundtruth.keypoints_uv"][:, :, 2]  # the goal row of KEYPOINTS
    peak = maps[:, :, 0].flatten(2).argmax(-1)
    cell = (goal_uv.clamp(0, 63.9) * 16 / 64).long()
    assert ((peak // 16 - cell[..., 1]).abs() <= 1).all() and ((peak % 16 - cell[..., 0]).abs() <= 1).all()
    assert torch.allclose(maps[:, :, 2].mean((-1, -2)), batch["future.progress"], atol=1e-5)


def test_teacher_moves_toward_the_encoder(ds):
    from wam.train.loop import build_model

    model = build_model("fast-wam", ds, {"substrate": "feature-teacher"}, d_model=32, n_layers=1)
    teacher = model.substrates["feature_teacher"].teacher
    before = [p.clone() for p in teacher.parameters()]
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    model.after_step()
    moved = [(p - b).mean().item() for p, b in zip(teacher.parameters(), before)]
    assert all(m == pytest.approx(0.01, abs=1e-4) for m in moved)  # decay 0.99: one hundredth of the way
    assert not any(p.requires_grad for p in teacher.parameters())


def test_one_joint_diffusion_model_is_policy_forward_and_inverse_model():
    """Independent noise levels: condition on or marginalize any stream of the same weights."""
    torch.manual_seed(0)
    backbone = DiffusionBackbone(D, 1, 2, CTX, streams(), {"action": ("future",), "future": ("action",)},
                                 dropout=0.0).eval()
    ctx, g = context(), lambda: torch.Generator().manual_seed(5)  # noqa: E731
    future, action = torch.randn(2, 5, 6), torch.rand(2, 4, 2) * 2 - 1
    policy = backbone.sample(ctx, ("action",), 3, generator=g())["action"]  # p(a | c): the future marginalized
    inverse = backbone.sample(ctx, ("action",), 3, given={"future": future}, generator=g())["action"]  # p(a | c, s)
    forward = backbone.sample(ctx, ("future",), 3, given={"action": action}, generator=g())["future"]  # p(s | c, a)
    other = backbone.sample(ctx, ("future",), 3, given={"action": -action}, generator=g())["future"]
    assert policy.shape == inverse.shape == (2, 4, 2) and forward.shape == (2, 5, 6)
    assert not torch.allclose(policy, inverse) and not torch.allclose(forward, other)


@pytest.mark.parametrize("size", [64, 84, 96, 128])
@pytest.mark.parametrize("tokens", [1, 16])
def test_the_image_encoder_reads_any_image_size(size, tokens):
    """84x84 (the references' MetaWorld images) is not a multiple of 16: its last feature map is 6x6, rounded up."""
    encoder = ImageEncoder(32, image_size=size, tokens=tokens)
    assert encoder(torch.rand(2, 3, size, size)).shape == (2, tokens, 32)


def test_spatial_softmax_reads_an_image_as_the_coordinates_of_its_keypoints():
    encoder = ImageEncoder(32, image_size=64, keypoints=8)
    assert encoder(torch.rand(2, 3, 64, 64)).shape == (2, 1, 32)
    assert "positions" not in encoder.state_dict()  # derived from the image size, not learned
    # keypoint map 0 reads channel 0 of the 4x4 last feature map, sharply: a peak at row 3, column 1 reads as the
    # cell's (x, y) on the [-1, 1] grid (-1, -1/3, 1/3, 1); a flat map reads as the centre
    with torch.no_grad():
        encoder.keypoint_maps.weight.zero_()
        encoder.keypoint_maps.bias.zero_()
        encoder.keypoint_maps.weight[0, 0] = 100.0
    features = torch.zeros(2, 128, 4, 4)
    features[0, 0, 3, 1] = 1.0
    xy = encoder.keypoint_coordinates(features)
    assert xy.shape == (2, 8, 2)
    assert torch.allclose(xy[0, 0], torch.tensor([-1 / 3, 1.0]), atol=1e-4)
    assert torch.allclose(xy[1], torch.zeros(8, 2), atol=1e-6) and torch.allclose(xy[0, 1:], torch.zeros(7, 2))


def test_an_image_size_the_frame_autoencoder_cannot_halve_is_refused_naming_sizes_it_can():
    with pytest.raises(ValueError, match=r"84x84 cannot pass the frame autoencoder.*by 8 \(the nearest: 80 or 88\)"):
        AutoencoderConfig(image_size=84)


def test_instructions_as_one_token_or_word_by_word():
    from wam.nn.layers import InstructionEncoder

    bag, words = InstructionEncoder(["open", "drawer"], 8), InstructionEncoder(["open", "drawer"], 8, words=3)
    assert bag(["drawer open", "open"]).shape == (2, 1, 8)
    out = words(["drawer open", "open drawer now please"])
    assert out.shape == (2, 3, 8)
    assert torch.equal(out[0, 0], words.embed.weight[2]) and torch.equal(out[0, 2], words.pad)  # padded
    assert torch.equal(out[1, 2], words.embed.weight[0])  # 'now' is unknown; 'please' is cut


def test_latent_codes_are_cached_on_disk_per_autoencoder(vision_data, tmp_path):
    import shutil

    from wam.data.lerobot import LeRobotDataset
    from wam.substrates.pixel import LatentFrames

    shutil.copytree(vision_data, tmp_path / "data", ignore=shutil.ignore_patterns("cache"))  # other tests fill it
    ds = LeRobotDataset.load(tmp_path / "data")
    substrate = LatentFrames(2, "observation.images.corner2", 64)
    substrate.fit(ds, 2)
    codes = substrate.cache(ds)["cache.pixel-latent"]
    assert codes.shape == (ds.num_frames, 16, 32)
    assert len(list((tmp_path / "data/cache").glob("pixel-latent-*.npy"))) == 1
    substrate._encode = None  # a second call must read the file, not encode
    assert np.array_equal(substrate.cache(ds)["cache.pixel-latent"], codes)
    with torch.no_grad():
        next(substrate.autoencoder.parameters()).add_(1.0)  # other weights: other codes, never the stale file
    del substrate._encode
    substrate.cache(ds)
    assert len(list((tmp_path / "data/cache").glob("pixel-latent-*.npy"))) == 2
    assert LeRobotDataset.load(tmp_path / "data").num_frames == ds.num_frames  # the reader ignores cache/


@pytest.mark.parametrize("reads", [{}, {"action": ("future",)}, {"future": ("action",)}])
def test_query_backbones_train_on_what_they_sample(reads):
    """A target must enter the trunk as a query, as at inference, not as its own value (which it would copy)."""
    torch.manual_seed(0)
    backbone = JEPABackbone(D, 1, 2, CTX, streams(), reads, dropout=0.0, collapse_weight=0.0).eval()
    ctx, action = context(), torch.rand(2, 4, 2) * 2 - 1
    loss = backbone.loss(ctx, {"action": action})["action"]
    sampled = backbone.sample(ctx, ("action",), 1)["action"]
    assert loss.item() == pytest.approx(nn_mse(backbone, ctx, action), rel=1e-5)
    assert not torch.allclose(sampled, action, atol=1e-3)


def nn_mse(backbone, ctx, action) -> float:
    prediction = backbone.read_out("action", backbone.features(ctx, ("action",), {})["action"])
    return (prediction - action).pow(2).mean().item()
