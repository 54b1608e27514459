"""The dataset on disk: LeRobot v3 layout, declared features, stats, windows, resumable collection, bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_one_line_error, wam_cli, wam_refused
from wam.data.collect import CollectConfig
from wam.data.lerobot import DatasetError, LeRobotDataset
from wam.data.windows import WindowDataset
from wam.options import OptionError

pytestmark = pytest.mark.sim


def test_layout_and_declared_features(vision_data):
    info = json.loads((vision_data / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 4
    for rel in ("meta/stats.json", "meta/tasks.parquet", "meta/episodes/chunk-000/file-000.parquet",
                "data/chunk-000/file-000.parquet"):
        assert (vision_data / rel).exists(), rel
    stored: set[str] = set()
    frames = 0
    for path in (vision_data / "data").rglob("*.parquet"):
        table = pq.read_table(path)
        stored |= set(table.column_names)
        frames += table.num_rows
    assert stored == set(info["features"]), "every stored column is declared and every declared feature is stored"
    assert frames == info["total_frames"]
    for key, feature in info["features"].items():
        assert {"dtype", "shape"} <= set(feature), key
    assert info["features"]["observation.images.corner2"] == {"dtype": "image", "shape": [64, 64, 3],
                                                              "names": ["height", "width", "channels"]}


def test_reader_round_trip_and_stats(vision_data):
    ds = LeRobotDataset.load(vision_data)
    assert ds.frames["observation.images.corner2"].shape[1:] == (64, 64, 3)
    assert ds.frames["observation.images.corner2"].dtype == np.uint8
    assert ds.tasks == ["button-press-topdown-v3", "drawer-open-v3"]
    assert [e["seed"] for e in ds.episodes] == [0, 1, 0, 1] and all(e["success"] for e in ds.episodes)
    assert np.array_equal(ds.frames["index"], np.arange(ds.num_frames))
    action = ds.frames["action"]
    np.testing.assert_allclose(ds.stats["action"]["mean"], action.mean(0), rtol=1e-4, atol=1e-6)
    assert np.array(ds.stats["observation.images.corner2"]["mean"]).shape == (3, 1, 1)
    # The expert succeeds: the last frame of each episode is marked done and successful.
    last = [e["dataset_to_index"] - 1 for e in ds.episodes]
    assert ds.frames["next.success"][last].all() and ds.frames["next.done"][last].all()
    # Ground-truth keypoints project inside the 64x64 image for these tasks.
    uv = ds.frames["groundtruth.keypoints_uv"]
    assert np.isfinite(uv).all() and (uv > 0).all() and (uv < 64).all()


def test_window_semantics(vision_data):
    ds = LeRobotDataset.load(vision_data)
    w = WindowDataset(ds, ["observation.images.corner2", "observation.state"], n_obs=2, horizon=16,
                      future_offsets=(8, 16))
    ep = ds.episodes[1]
    lo, hi = ep["dataset_from_index"], ep["dataset_to_index"]
    pos = np.array([np.flatnonzero(w.anchors == lo)[0], np.flatnonzero(w.anchors == hi - 3)[0]])
    b = w.batch(pos)
    state = ds.frames["observation.state"]
    # History before the episode start repeats the first frame.
    np.testing.assert_array_equal(b["observation.state"][0].numpy(), state[[lo, lo]])
    # Actions past the episode end repeat the last action and are flagged as padding.
    np.testing.assert_array_equal(b["action"][1, :3].numpy(), ds.frames["action"][hi - 3:hi])
    np.testing.assert_array_equal(b["action"][1, 3:].numpy(), np.repeat(ds.frames["action"][hi - 1:hi], 13, 0))
    assert b["action_is_pad"][1].tolist() == [False] * 3 + [True] * 13
    # Future targets are t+8 and t+16, clamped to the last frame of the episode.
    np.testing.assert_array_equal(b["future.observation.state"][0].numpy(), state[[lo + 8, lo + 16]])
    np.testing.assert_array_equal(b["future.observation.state"][1].numpy(), state[[hi - 1, hi - 1]])
    assert b["task"] == ["button press topdown"] * 2


def test_state_track(state_data):
    ds = LeRobotDataset.load(state_data)
    assert ds.features["observation.state"]["shape"] == [39]
    assert "observation.images.corner2" not in ds.frames


@pytest.mark.reliability
def test_collection_is_deterministic_and_resumes_after_sigkill(tmp_path, vision_data):
    """Kill a collection mid-way, re-run it, and get exactly the dataset an uninterrupted run produces."""
    out = tmp_path / "resumed"
    args = ["collect", "--tasks", "button-press-topdown-v3,drawer-open-v3", "--episodes", "2", "--out", str(out),
            "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "wam.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "staging").glob("episode-*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "meta/info.json").exists(), "killed before it could finish"
    # Simulate a torn write: a staged episode truncated mid-file must be collected again, not trusted.
    staged = sorted((out / "staging").glob("episode-*.parquet"))
    staged[0].write_bytes(staged[0].read_bytes()[:100])

    result = wam_cli(*args)
    assert result.returncode == 0, result.stderr
    resumed, fresh = LeRobotDataset.load(out), LeRobotDataset.load(vision_data)
    assert len(resumed.episodes) == 4
    for key in fresh.frames:
        np.testing.assert_array_equal(resumed.frames[key], fresh.frames[key], err_msg=key)
    assert wam_cli(*args).returncode == 0, "re-running a finished collection is a no-op"


def test_different_arguments_on_existing_collection_are_refused(vision_data):
    result = wam_refused("collect", "--tasks", "drawer-open-v3", "--episodes", "2", "--out", vision_data)
    assert_one_line_error(result, "other arguments", "--out")


def test_unknown_task_is_one_clear_line(tmp_path):
    result = wam_refused("collect", "--tasks", "drawer-opn-v3", "--episodes", "1", "--out", tmp_path / "x")
    assert_one_line_error(result, "unknown metaworld task 'drawer-opn-v3'", "drawer-open-v3")
    assert not (tmp_path / "x").exists(), "nothing is written for a bad request"


def test_unknown_suite_is_one_clear_line(tmp_path):
    result = wam_refused("collect", "--suite", "libero", "--tasks", "x", "--episodes", "1", "--out", tmp_path / "x")
    assert_one_line_error(result, "unknown suite 'libero'", "metaworld, metaworld-lerobot, metaworld-wrist, pusht")
    assert not (tmp_path / "x").exists(), "nothing is written for a bad request"


@pytest.fixture
def broken(tmp_path, vision_data):
    copy = tmp_path / "broken"
    shutil.copytree(vision_data, copy)
    return copy


def test_missing_parquet_file(broken):
    (broken / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetError, match="no parquet files"):
        LeRobotDataset.load(broken)


def test_truncated_parquet_file(broken, tmp_path):
    path = broken / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = wam_refused("train", "--preset", "vla", "--data", broken, "--out", tmp_path / "run", "--steps", "1")
    assert_one_line_error(result, "file-000.parquet is corrupt or truncated")


def test_missing_info_json_points_to_collect(broken):
    (broken / "meta/info.json").unlink()
    with pytest.raises(DatasetError, match="meta/info.json is missing.*wam collect"):
        LeRobotDataset.load(broken)


def test_declared_shape_mismatch(broken):
    info = json.loads((broken / "meta/info.json").read_text())
    info["features"]["observation.state"]["shape"] = [7]
    (broken / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"'observation.state' has shape \[4\].*\[7\] in meta/info.json"):
        LeRobotDataset.load(broken)


def test_nan_values_are_refused(broken):
    import pyarrow as pa

    path = broken / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    reward = table.column("next.reward").to_numpy().copy()
    reward[5] = np.nan
    table = table.set_column(table.column_names.index("next.reward"), "next.reward", pa.array(reward))
    pq.write_table(table, path)
    with pytest.raises(DatasetError, match=r"'next.reward' holds NaN or inf values \(first at frame 5\)"):
        LeRobotDataset.load(broken)


def test_failed_demonstrations_are_refused_reported_and_skipped(tmp_path):
    """A 5-step cap makes the real expert fail every episode: the collection stops with the failures listed and its
    episodes kept; --keep-failed writes them (marked), and training refuses them unless --include-failed."""
    data = tmp_path / "data"
    collect = ["collect", "--tasks", "drawer-open-v3", "--episodes", "2", "--track", "state", "--max-steps", "5",
               "--workers", "1", "--out", data]
    refused = wam_cli(*collect)
    assert_one_line_error(refused, "drawer-open-v3 2/2", "--max-failed 0.1", "--keep-failed")
    assert len(list((data / "staging").glob("episode-*.parquet"))) == 2 and not (data / "meta/info.json").exists()

    kept = wam_cli(*collect, "--keep-failed")
    assert kept.returncode == 0, kept.stderr
    assert "failed drawer-open-v3 2/2 episodes" in kept.stdout
    info = json.loads((data / "meta/info.json").read_text())
    assert info["wam"]["failed_episodes"] == {"drawer-open-v3": 2} and info["total_frames"] == 2 * 5
    assert [e["success"] for e in LeRobotDataset.load(data).episodes] == [False, False]

    train = ["train", "--preset", "vla", "--data", data, "--steps", "2", "--batch-size", "4", "--threads", "1"]
    assert_one_line_error(wam_refused(*train, "--out", tmp_path / "a"), "no successful episode", "--include-failed")
    included = wam_cli(*train, "--out", tmp_path / "b", "--include-failed")
    assert included.returncode == 0, included.stderr
    config = json.loads((tmp_path / "b/train_config.json").read_text())
    assert (config["failed_episodes"], config["trained_on_episodes"]) == (2, 2)


def test_bad_collect_arguments(tmp_path):
    with pytest.raises(OptionError, match="--episodes must be at least 1, got 0"):
        CollectConfig(tasks="drawer-open-v3", episodes=0, out=tmp_path / "z")
    with pytest.raises(OptionError, match="--seed must be at most 99999999, got 1000000000"):
        CollectConfig(tasks="drawer-open-v3", episodes=1, out=tmp_path / "z", seed=10**9)
    with pytest.raises(OptionError, match="--seed must be at most 99999998 with --episodes 2"):
        CollectConfig(tasks="drawer-open-v3", episodes=2, out=tmp_path / "z", seed=99_999_999)
    assert not (tmp_path / "z").exists()


def test_a_dataset_of_an_unregistered_suite_is_refused(broken):
    info_path = broken / "meta/info.json"
    info = json.loads(info_path.read_text())
    assert info["wam"]["suite"] == "metaworld"
    info["wam"]["suite"] = "libero"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="wam.suite 'libero' is not a registered suite"):
        LeRobotDataset.load(broken)
    del info["wam"]["suite"]  # written before suites existed: MetaWorld's
    info_path.write_text(json.dumps(info))
    assert LeRobotDataset.load(broken).suite == "metaworld"
