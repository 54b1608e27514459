"""CUDA as a tested path: every preset trains and acts on the GPU, the KV cache equals recomputation there, the
command line trains (float32 and bf16) and evaluates with ``--device cuda``, and two processes train over nccl.

Skipped on a machine without CUDA. They run on PushT (pymunk: no OpenGL needed on a GPU server); the same presets
are tested on MetaWorld on the CPU in ``test_presets.py`` and ``test_deployment.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import train_on_windows, wam_cli
from wam.data.lerobot import LeRobotDataset
from wam.deployment import ChunkedPolicy, DeploymentConfig, StreamingPolicy, make_policy
from wam.envs import get_suite
from wam.presets.models import PRESETS
from wam.train.loop import build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PUSHT = get_suite("pusht")
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "inference_steps": 2, "image_channels": (8, 8, 8, 8),
         "substrate_fit_steps": 2}


@pytest.fixture(scope="module")
def ds(pusht_data):
    return LeRobotDataset.load(pusht_data)


def on_cuda(name: str | None, ds: LeRobotDataset, spec: dict[str, str] | None = None, **overrides):
    torch.manual_seed(0)
    model = build_model(name, ds, spec, **{**SMALL, **overrides})
    for substrate in model.substrates.values():
        substrate.fit(ds, 2)
    model = model.cuda()
    model.add_caches(ds)
    return model


def drive(policies, steps: int, seed: int = 3) -> list[list[np.ndarray]]:
    """One real PushT episode acting with the first policy; every policy sees the same observations."""
    env = PUSHT.make_env("pusht", track="vision", max_episode_steps=steps + 1)
    try:
        obs, _ = env.reset(seed=seed)
        actions: list[list[np.ndarray]] = [[] for _ in policies]
        for _ in range(steps):
            obs["task"] = PUSHT.instruction("pusht")
            for i, p in enumerate(policies):
                actions[i].append(p.select_action(obs))
            obs, *_ = env.step(actions[0][-1])
        return actions
    finally:
        env.close()


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_preset_trains_and_acts_on_cuda(name, precision, ds):
    model = on_cuda(name, ds)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
        train_on_windows(model, model.windows(ds), steps=2, batch_size=4)
    policy = make_policy(model.eval(), DeploymentConfig(), seed=0)
    (actions,) = drive([policy], steps=3)
    assert all(a.shape == (2,) and np.isfinite(a).all() for a in actions)
    assert all(p.is_cuda for p in model.parameters())


@pytest.mark.parametrize("coupling, substrate", [("none", "none"), ("joint", "pixel-latent")])
def test_kv_cache_gives_the_recomputed_actions_on_cuda(coupling, substrate, ds):
    model = on_cuda("fast-wam", ds, {"substrate": substrate, "coupling": coupling, "backbone": "autoregressive"},
                    n_obs=4, image_tokens=4).eval()
    cached, recomputed = StreamingPolicy(model, kv_cache=True), StreamingPolicy(model, kv_cache=False)
    ordinary = ChunkedPolicy(model, 1)
    a, b, c = drive([cached, recomputed, ordinary], steps=10)
    # PushT acts in pixels (0-512): equal to 1e-4 of the action range (cuDNN may pick other kernels per batch shape).
    tolerance = 1e-4 * float(np.max(np.asarray(ds.stats["action"]["max"]) - np.asarray(ds.stats["action"]["min"])))
    np.testing.assert_allclose(np.array(a), np.array(b), atol=tolerance)
    np.testing.assert_allclose(np.array(a), np.array(c), atol=tolerance)


def test_planning_presets_draw_their_search_noise_on_the_gpu(ds):
    """The rollout coupling's proposals and CEM/MPPI resampling use the policy's CUDA generator."""
    model = on_cuda("world-model-mpc", ds).eval()
    first, second = (make_policy(model, DeploymentConfig(), seed=5) for _ in range(2))
    a, b = drive([first, second], steps=2)
    np.testing.assert_array_equal(np.array(a), np.array(b))  # same seed, same plan


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_command_line_trains_and_evaluates_on_cuda(pusht_data, tmp_path, precision):
    run = tmp_path / "run"
    result = wam_cli("train", "--preset", "fast-wam", "--data", pusht_data, "--out", run, "--steps", "6",
                     "--batch-size", "8", "--substrate-fit-steps", "4", "--log-every", "2", "--device", "cuda",
                     "--precision", precision, "--save-every", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["device"].startswith("cuda")
    result = wam_cli("train", "--preset", "fast-wam", "--data", pusht_data, "--out", run, "--steps", "6",
                     "--batch-size", "8", "--substrate-fit-steps", "4", "--log-every", "2", "--device", "cuda",
                     "--precision", precision, "--save-every", "3", "--resume")
    assert result.returncode == 0, result.stderr[-3000:]
    result = wam_cli("eval", "--run", run, "--tasks", "pusht/pusht", "--episodes", "2", "--max-steps", "16",
                     "--device", "cuda", "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "eval/eval_info.json").read_text())
    assert info["machine"]["device"].startswith("cuda") and len(info["per_episode"]) == 2


def test_deterministic_cuda_training_repeats_bit_for_bit(pusht_data, tmp_path):
    digests = []
    for name in ("a", "b"):
        result = wam_cli("train", "--preset", "vla", "--data", pusht_data, "--out", tmp_path / name, "--steps", "5",
                         "--batch-size", "8", "--device", "cuda", "--deterministic")
        assert result.returncode == 0, result.stderr[-3000:]
        digests.append(json.loads((tmp_path / name / "train_summary.json").read_text())["weights_sha256"])
    assert digests[0] == digests[1]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="nccl needs one GPU per process: two GPUs")
def test_two_process_training_over_nccl(pusht_data, tmp_path):
    out = tmp_path / "ddp"
    result = wam_cli("train", "--nproc", "2", "--preset", "vla", "--data", pusht_data, "--out", out, "--steps", "20",
                     "--batch-size", "16", "--device", "cuda", "--log-every", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["weights_sha256"][0] == summary["weights_sha256"][1]
