"""Deployment regimes on real models in real MetaWorld episodes: KV-cache streaming equals recomputation and stays
bounded, chunking and temporal ensembling execute what they promise, adaptive chunking replans on surprise, and
every impossible regime is refused with a clear message."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from wam.anatomy import SpecError
from wam.data.lerobot import LeRobotDataset
from wam.deployment import AdaptivePolicy, ChunkedPolicy, DeploymentConfig, Policy, StreamingPolicy, make_policy
from wam.envs import SuiteEnv, get_suite
from wam.model import WorldActionModel
from wam.train.loop import build_model

METAWORLD = get_suite("metaworld")

pytestmark = pytest.mark.sim
TASK = "drawer-open-v3"


@pytest.fixture(scope="module")
def ds(vision_data):
    return LeRobotDataset.load(vision_data)


@pytest.fixture(scope="module")
def env():
    env = METAWORLD.make_env(TASK, track="vision", image_size=64)
    yield env
    env.close()


def small(ds: LeRobotDataset, spec: dict[str, str], **overrides) -> WorldActionModel:
    torch.manual_seed(0)
    model = build_model("fast-wam", ds, spec, **{"d_model": 32, "n_layers": 2, "n_heads": 2, "inference_steps": 2,
                                                 "image_channels": (8, 8, 8, 8), "substrate_fit_steps": 2,
                                                 **overrides})
    for substrate in model.substrates.values():
        substrate.fit(ds, 2)
    return model.eval()


def drive(env: SuiteEnv, policies: list[Policy], steps: int, seed: int = 7) -> list[list[np.ndarray]]:
    """Run one real episode acting with the first policy; every policy sees the same observations."""
    for p in policies:
        p.reset()
    obs, _ = env.reset(seed=seed)
    actions: list[list[np.ndarray]] = [[] for _ in policies]
    for _ in range(steps):
        obs["task"] = METAWORLD.instruction(TASK)
        for i, p in enumerate(policies):
            actions[i].append(p.select_action(obs))
        obs, *_ = env.step(actions[0][-1])
    return actions


@pytest.mark.parametrize("coupling, substrate, future",
                         [("none", "none", "skip"), ("joint", "feature-encoder-only", "skip"),
                          ("post-head", "feature-teacher", "predict"), ("joint", "pixel-latent", "predict")])
def test_kv_cache_replacement_gives_the_recomputed_actions(ds, env, coupling, substrate, future):
    # Window 4 with image grids of 4 tokens: by step 12 the window has slid 8 times.
    model = small(ds, {"substrate": substrate, "coupling": coupling, "backbone": "autoregressive"}, n_obs=4,
                  image_tokens=4)
    knobs = model.inference(future=future)
    cached = StreamingPolicy(model, kv_cache=True, inference=knobs)
    recomputed = StreamingPolicy(model, kv_cache=False, inference=knobs)
    ordinary = ChunkedPolicy(model, 1, inference=knobs)  # the non-streaming path: whole history encoded, whole chunk
    a, b, c = drive(env, [cached, recomputed, ordinary], steps=12)
    np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
    np.testing.assert_allclose(np.array(a), np.array(c), atol=1e-5)
    # The cache holds exactly the window: 4 frames of 4 image tokens + 1 state token.
    assert len(cached._cache) == 4 * 5 and cached.cache_tokens_max == 4 * 5


def test_kv_cache_memory_is_flat_over_a_long_episode(ds, env):
    model = small(ds, {"substrate": "none", "coupling": "none", "backbone": "autoregressive"}, n_obs=3)
    policy = make_policy(model, DeploymentConfig(deployment="single-step"))
    assert isinstance(policy, StreamingPolicy)
    drive(env, [policy], steps=5)
    size = policy._cache.nbytes()
    drive(env, [policy], steps=60)
    assert policy._cache.nbytes() == size and len(policy._cache) == 3 * 2
    assert policy.knobs() == {"regime": "single-step", "n_action_steps": 1, "kv_cache": True, "window": 3,
                              "cache_tokens_max": 3 * 2}


def test_chunked_calls_once_per_k_steps_and_ensembles_overlapping_chunks(ds, env):
    model = small(ds, {"substrate": "none", "coupling": "none", "backbone": "diffusion"})
    k4 = ChunkedPolicy(model, 4)
    drive(env, [k4], steps=10)
    assert len(k4.call_latencies) == 3  # steps 0, 4, 8

    m = 0.5
    ensembled = ChunkedPolicy(model, 2, ensemble=m)
    plans: list[tuple[int, np.ndarray]] = []
    plan = ensembled._plan

    def spy() -> np.ndarray:  # record every chunk the real model returns
        chunk = plan()
        plans.append((ensembled._step, chunk))
        return chunk

    ensembled._plan = spy
    (actions,) = drive(env, [ensembled], steps=7)
    for t, action in enumerate(actions):
        votes = [c[t - s] for s, c in plans if 0 <= t - s < len(c)]
        weights = np.exp(-m * np.arange(len(votes)))  # oldest chunk first
        np.testing.assert_allclose(action, (weights[:, None] * np.array(votes)).sum(0) / weights.sum(), rtol=1e-5)
    assert len(plans) == 4


def test_open_loop_executes_the_whole_horizon(ds, env):
    model = small(ds, {"substrate": "none", "coupling": "none", "backbone": "diffusion"})
    policy = make_policy(model, DeploymentConfig(deployment="open-loop"))
    drive(env, [policy], steps=20)
    assert len(policy.call_latencies) == 2 and policy.knobs()["n_action_steps"] == model.config.horizon


def test_surprise_is_zero_for_a_perfect_prediction_and_adaptive_replans_on_it(ds, env):
    model = small(ds, {"substrate": "pixel-latent", "coupling": "joint", "backbone": "hybrid"},
                  future_offsets=(2, 4, 6, 8), horizon=8, n_action_steps=8)
    obs, _ = env.reset(seed=3)
    obs["task"] = METAWORLD.instruction(TASK)
    batch = {k: torch.from_numpy(np.asarray(obs[k]))[None, None].repeat(1, model.config.n_obs, *[1] * np.ndim(obs[k]))
             for k in model.observation_keys}
    batch["task"] = [obs["task"]]
    observed = model.observe(batch)
    assert model.surprise(observed, batch, 1) == pytest.approx(0.0, abs=1e-6)
    assert model.surprise({n: v + 1.0 for n, v in observed.items()}, batch, 1) > 0.01

    never, always = AdaptivePolicy(model, threshold=float("inf")), AdaptivePolicy(model, threshold=0.0)
    drive(env, [never], steps=16)
    drive(env, [always], steps=16)
    assert len(never.call_latencies) == 2 and never.early_replans == 0  # every K = 8 steps
    assert len(always.call_latencies) == 8 and always.early_replans == 7  # at every first check, 2 steps in
    assert always.min_actions_per_call == 2 and always.knobs()["checks"] == [2, 4, 6]
    assert always.inference.future == "predict"  # the surprise needs the prediction
    assert model.config.future_at_inference == "skip"  # which the policy asks for; the model stays as trained


def test_interactive_deployment_steps_with_the_future_predicted(ds, env):
    model = small(ds, {"substrate": "pixel-latent", "coupling": "post-head", "backbone": "hybrid",
                       "deployment": "interactive"})
    policy = make_policy(model)
    assert isinstance(policy, ChunkedPolicy) and policy.regime == "interactive" and policy.n_action_steps == 1
    assert policy.inference.future == "predict" and model.config.future_at_inference == "skip"
    drive(env, [policy], steps=3)
    assert len(policy.call_latencies) == 3


@pytest.mark.parametrize("spec, config, message", [
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(surprise=0.5), "substrate 'none' predicts none"),
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(deployment="single-step", ensemble=0.1),
     "options of chunked deployment"),
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(ensemble=0.1, surprise=0.5), "not both"),
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(deployment="open-loop", n_action_steps=4),
     "executes 16 action(s) per call"),
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(n_action_steps=40), "must lie in [1, horizon=16]"),
    ({"substrate": "none", "coupling": "none"}, DeploymentConfig(ensemble=-1.0), "must be >= 0"),
    ({"substrate": "feature-encoder-only", "coupling": "post-head"}, DeploymentConfig(decode=True), "no decoder"),
    ({"substrate": "pixel-latent", "coupling": "joint"}, DeploymentConfig(decode=True), "add --future predict"),
    ({"substrate": "geometric", "coupling": "joint"}, DeploymentConfig(surprise=0.5, n_action_steps=16),
     "simulator ground truth"),
    ({"substrate": "pixel-latent", "coupling": "joint"}, DeploymentConfig(surprise=0.5, n_action_steps=8),
     "nothing can trigger an early replan"),
])
def test_impossible_deployments_are_refused(ds, spec, config, message):
    model = small(ds, {**spec, "backbone": "diffusion"})
    with pytest.raises(ValueError, match=re.escape(message)):
        make_policy(model, config)


def test_streaming_refuses_what_it_cannot_stream_and_single_step_falls_back(ds):
    rollout = small(ds, {"substrate": "feature-teacher", "coupling": "rollout", "backbone": "autoregressive"})
    with pytest.raises(ValueError, match="rollout planner"):
        StreamingPolicy(rollout)
    fallback = make_policy(rollout, DeploymentConfig(deployment="single-step"))
    assert isinstance(fallback, ChunkedPolicy) and fallback.n_action_steps == 1 and fallback.regime == "single-step"
    with pytest.raises(ValueError, match="'autoregressive' backbone"):
        StreamingPolicy(small(ds, {"substrate": "none", "coupling": "none", "backbone": "diffusion"}))


@pytest.mark.parametrize("coupling", ["joint", "post-head", "rollout"])
@pytest.mark.parametrize("backbone", ["diffusion", "autoregressive", "hybrid", "jepa", "vlm"])
def test_a_shorter_prediction_horizon_generates_a_prefix_of_the_future(ds, backbone, coupling):
    model = small(ds, {"substrate": "feature-teacher", "coupling": coupling, "backbone": backbone})
    knobs = model.inference(future="predict" if coupling != "rollout" else None)
    batch = model.windows(ds).batch(np.arange(2))
    name = "future.feature-teacher"
    full = model.plan(batch, generator=torch.Generator().manual_seed(0), inference=knobs)[1][name]
    shorter = model.inference(future_horizon=1, base=knobs)
    actions, futures = model.plan(batch, generator=torch.Generator().manual_seed(0), inference=shorter)
    assert actions.shape == (2, 16, 4) and futures[name].shape == (2, full.shape[1] // 2, full.shape[2])
    if backbone == "autoregressive" and coupling == "joint":  # action first, then the future left to right
        torch.testing.assert_close(futures[name], full[:, :full.shape[1] // 2])
    with pytest.raises(SpecError, match=re.escape("future horizon 3 must lie in [1, 2]")):
        model.inference(future_horizon=3)


def test_a_shortened_pixel_future_still_decodes(ds):
    model = small(ds, {"substrate": "pixel-latent", "coupling": "joint", "backbone": "hybrid"})
    model.add_caches(ds)
    futures = model.predict(model.windows(ds).batch(np.arange(2)), generator=torch.Generator().manual_seed(0),
                            inference=model.inference(future_horizon=1))
    assert model.decode(futures)["future.pixel-latent"]["frames"].shape == (2, 1, 3, 64, 64)
