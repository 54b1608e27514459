"""Evaluation fanned out to a local Ray cluster with 2 workers gives the single-process result, episode by episode."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wam_cli
from wam.eval.runner import task_success

pytest.importorskip("ray")


def test_ray_evaluation_equals_single_process(vision_data, tmp_path):
    run = tmp_path / "run"
    trained = wam_cli("train", "--preset", "vla", "--data", vision_data, "--out", run, "--steps", "30",
                      "--batch-size", "8", "--threads", "1")
    assert trained.returncode == 0, trained.stderr[-2000:]
    args = ["eval", "--run", run, "--tasks", "button-press-topdown-v3,drawer-open-v3", "--episodes", "3",
            "--max-steps", "30", "--video", "1"]
    single, fanned = tmp_path / "single", tmp_path / "ray"
    assert wam_cli(*args, "--out", single, "--envs", "1").returncode == 0  # one at a time, as each Ray worker acts
    result = wam_cli(*args, "--out", fanned, "--ray", "--ray-workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (json.loads((d / "eval_info.json").read_text()) for d in (single, fanned))
    outcome = lambda info: [(e["task"], e["seed"], e["success"], e["steps"], e["model_calls"], e["sum_reward"])  # noqa: E731
                            for e in info["per_episode"]]
    assert outcome(a) == outcome(b) and len(outcome(a)) == 6
    assert task_success(a) == task_success(b) and a["overall"]["pc_success"] == b["overall"]["pc_success"]
    assert [p.split("/")[-1] for p in a["video_paths"]] == [p.split("/")[-1] for p in b["video_paths"]]
    assert all((fanned / "videos" / p.split("/")[-1]).stat().st_size > 1000 for p in b["video_paths"])


def test_ray_collection_equals_multiprocess(vision_data, tmp_path):
    """The same collection as the session's dataset (2 tasks x 2 episodes), recorded by 2 Ray workers."""
    import numpy as np

    from tests.conftest import TASKS
    from wam.data.lerobot import LeRobotDataset

    out = tmp_path / "ray-data"
    result = wam_cli("collect", "--tasks", TASKS, "--episodes", "2", "--out", out, "--ray", "--ray-workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = LeRobotDataset.load(vision_data), LeRobotDataset.load(out)
    assert a.episodes == b.episodes
    for key in a.frames:
        np.testing.assert_array_equal(a.frames[key], b.frames[key], err_msg=key)
