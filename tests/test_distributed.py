"""Multi-process training through torchrun (2 CPU processes, gloo): ranks stay in sync and the loss falls."""

from __future__ import annotations

import json

from tests.conftest import wam_cli


def test_two_process_training_keeps_ranks_in_sync(vision_data, tmp_path):
    out = tmp_path / "ddp"
    result = wam_cli("train", "--nproc", "2", "--preset", "vla", "--data", vision_data, "--out", out, "--steps", "60",
                     "--batch-size", "16", "--lr", "1e-3", "--warmup-steps", "5", "--log-every", "5", "--threads", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == 2
    first, second = summary["weights_sha256"]
    assert first == second  # the final EMA weights of rank 0 and rank 1
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 12 and sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
    assert sorted(p.name for p in out.iterdir()) == ["model", "tensorboard", "train_config.json", "train_log.jsonl",
                                                     "train_summary.json"]  # only rank 0 wrote
    assert len(list((out / "tensorboard").iterdir())) == 1, "one event file: rank 0's"


def test_batch_must_split_over_processes(vision_data, tmp_path):
    result = wam_cli("train", "--nproc", "2", "--preset", "vla", "--data", vision_data, "--out", tmp_path / "r",
                     "--steps", "1", "--batch-size", "5", "--threads", "1")
    assert result.returncode != 0 and "--batch-size 5 must split evenly over 2 processes" in result.stderr
