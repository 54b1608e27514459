"""Training checkpoints: `--resume` continues a run exactly, and a damaged or mismatched checkpoint is refused."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from wam.model import CheckpointError
from wam.train.checkpoint import checkpoints, latest_checkpoint, prune_checkpoints
from wam.train.loop import TrainConfig, train

pytestmark = pytest.mark.reliability
def losses(run) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def uninterrupted(vision_data, tmp_path_factory):
    """fast-wam (a pixel-latent substrate with a fitted autoencoder) for 6 steps, checkpointed at step 3."""
    cfg = TrainConfig(data=vision_data, out=tmp_path_factory.mktemp("run") / "a", preset="fast-wam", steps=6,
                      batch_size=4, warmup_steps=2, substrate_fit_steps=5, log_every=1, save_every=3, threads=1)
    train(cfg)
    return cfg


def interrupted_copy(cfg: TrainConfig, out):
    """The run directory as a run killed between steps 3 and 6 leaves it: checkpoint 3, a log running past it."""
    out.mkdir()
    for name in ("train_config.json", "train_log.jsonl"):
        shutil.copy(cfg.out / name, out / name)
    shutil.copytree(cfg.out / "checkpoints/step-000003", out / "checkpoints/step-000003")
    return replace(cfg, out=out, resume=True)


def test_resume_continues_with_the_same_losses_and_weights(uninterrupted, tmp_path):
    resumed = interrupted_copy(uninterrupted, tmp_path / "b")
    summary = train(resumed)
    assert summary["steps"] == 6
    assert list(losses(resumed.out)) == [1, 2, 3, 4, 5, 6]  # the lines logged after the checkpoint were replaced
    assert losses(resumed.out) == losses(uninterrupted.out)
    a, b = (load_file(str(run / "model/model.safetensors")) for run in (uninterrupted.out, resumed.out))
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), [k for k in a if not a[k].equal(b[k])]


def test_resuming_a_finished_run_trains_nothing(uninterrupted, tmp_path):
    finished = tmp_path / "f"
    shutil.copytree(uninterrupted.out, finished)
    weights = finished / "model/model.safetensors"
    stamp = weights.stat().st_mtime_ns
    summary = train(replace(uninterrupted, out=finished, resume=True))
    assert summary == json.loads((uninterrupted.out / "train_summary.json").read_text())
    assert weights.stat().st_mtime_ns == stamp and losses(finished) == losses(uninterrupted.out)
    with pytest.raises(ValueError, match="steps: 6 -> 7"):  # a longer run is not a finished one
        train(replace(uninterrupted, out=finished, resume=True, steps=7))


def test_resume_without_a_checkpoint_starts_from_scratch(uninterrupted, tmp_path):
    fresh = replace(uninterrupted, out=tmp_path / "c", resume=True, save_every=0)
    train(fresh)
    assert losses(fresh.out) == losses(uninterrupted.out)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_checkpoint_is_refused(uninterrupted, tmp_path, damage):
    resumed = interrupted_copy(uninterrupted, tmp_path / "d")
    target = resumed.out / "checkpoints/step-000003/training/state.safetensors"
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    else:
        target.unlink()
    with pytest.raises(CheckpointError, match="state.safetensors is missing, truncated or altered.*delete"):
        train(resumed)
    assert target.exists() or damage == "delete"  # nothing was overwritten


def test_resume_with_other_options_is_refused(uninterrupted, tmp_path):
    resumed = replace(interrupted_copy(uninterrupted, tmp_path / "e"), steps=10, lr=1e-3)
    with pytest.raises(ValueError, match="lr: 0.0003 -> 0.001, steps: 6 -> 10"):
        train(resumed)


def test_pruning_keeps_the_newest_checkpoints(uninterrupted, tmp_path):
    for step in (1, 2, 3):
        shutil.copytree(uninterrupted.out / "checkpoints/step-000003", tmp_path / f"checkpoints/step-00000{step}")
    (tmp_path / "checkpoints/.step-000004.tmp-1").mkdir()  # a write killed before its rename is never picked
    prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in checkpoints(tmp_path)] == ["step-000002", "step-000003"]
    assert latest_checkpoint(tmp_path).name == "step-000003"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["step", "schedule", "optimizer_param_groups", "ema", "numpy_rng", "extra", "format",
                            "sha256", "unknown"]),
       value=st.none() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=5) | st.lists(st.integers()))
def test_an_edited_training_state_is_refused(uninterrupted, tmp_path, key, value):
    resumed = interrupted_copy(uninterrupted, tmp_path / f"f{abs(hash((key, repr(value))))}")
    path = resumed.out / "checkpoints/step-000003/training/state.json"
    state = json.loads(path.read_text())
    if state.get(key) == value:
        return
    state[key] = value
    path.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="state.json (was altered|is missing or unreadable|has format)"):
        train(resumed)


def test_prefetching_changes_nothing_that_is_drawn(uninterrupted, tmp_path):
    inline = replace(uninterrupted, out=tmp_path / "inline", prefetch=0, save_every=0)
    train(inline)
    assert losses(inline.out) == losses(uninterrupted.out)
    a, b = (load_file(str(run / "model/model.safetensors")) for run in (uninterrupted.out, inline.out))
    assert all(a[k].equal(b[k]) for k in a), [k for k in a if not a[k].equal(b[k])]


def test_training_uses_its_threads_and_gives_the_process_its_count_back(uninterrupted, tmp_path):
    """A bench trains, evaluates at one thread and trains again in one process: no stage may keep another's count."""
    before = torch.get_num_threads()
    summary = train(replace(uninterrupted, out=tmp_path / "two", steps=2, save_every=0, threads=before + 1))
    assert summary["cpu_threads"] == before + 1
    assert torch.get_num_threads() == before


def test_bf16_autocast_trains_close_to_fp32(uninterrupted, tmp_path):
    half = replace(uninterrupted, out=tmp_path / "bf16", precision="bf16", save_every=0)
    train(half)
    full, reduced = losses(uninterrupted.out), losses(half.out)
    assert full[1] != reduced[1]  # the forward pass really ran in bf16
    assert abs(reduced[1] - full[1]) < 0.05 * full[1], (full[1], reduced[1])
    assert json.loads((half.out / "train_config.json").read_text())["precision"] == "bf16"


def test_a_diverging_run_stops_with_the_step_it_diverged_at_and_saves_nothing(vision_data, tmp_path):
    cfg = TrainConfig(data=vision_data, out=tmp_path / "nan", preset="vla", steps=40, batch_size=4, warmup_steps=0,
                      lr=1e30, log_every=20, save_every=10, threads=1)
    with pytest.raises(FloatingPointError, match=r"at step \d+; lower --lr") as error:
        train(cfg)
    bad = int(str(error.value).split("at step ")[1].split(";")[0])
    assert 1 <= bad <= 10
    assert not (cfg.out / "model").exists() and checkpoints(cfg.out) == []
