"""The dataset format as LeRobot's own code reads and writes it (proved against LeRobot itself by
``scripts/check_lerobot.sh``; these tests pin the parts of the format that check relies on, without LeRobot)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import assert_one_line_error, wam_refused
from wam.data.check import check_dataset
from wam.data.collect import CollectConfig, run_collect
from wam.data.lerobot import (
    EPISODES_PATH,
    QUANTILES,
    DatasetError,
    LeRobotDataset,
    dataset_suite,
    feature_stats,
    read_episodes,
    read_tasks,
)
from wam.eval.subject import check_seeds_disjoint

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def pusht_images(tmp_path_factory):
    out = tmp_path_factory.mktemp("format") / "images"
    run_collect(CollectConfig(suite="pusht", tasks="pusht", episodes=2, out=out, workers=1))
    return out


@pytest.fixture(scope="module")
def pusht_video(tmp_path_factory):
    out = tmp_path_factory.mktemp("format") / "video"
    run_collect(CollectConfig(suite="pusht", tasks="pusht", episodes=2, out=out, workers=1, video=True))
    return out


def test_metadata_is_what_lerobot_reads(pusht_images):
    info = json.loads((pusht_images / "meta/info.json").read_text())
    assert info["fps"] == 10 and isinstance(info["fps"], int)
    assert info["video_files_size_in_mb"] > 0 and info["data_files_size_in_mb"] > 0
    tasks = pq.read_table(pusht_images / "meta/tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"], "LeRobot: tasks.iloc[i].name"
    episodes = pq.read_table(pusht_images / EPISODES_PATH.format(chunk_index=0, file_index=0)).column_names
    for column in ("meta/episodes/chunk_index", "meta/episodes/file_index", "data/chunk_index",
                   "stats/observation.image/q99", "stats/action/mean", "stats/index/count"):
        assert column in episodes, column
    data = pq.read_table(pusht_images / "data/chunk-000/file-000.parquet")
    types = json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]
    assert types["observation.image"] == {"_type": "Image"}
    assert types["action"] == {"feature": {"dtype": "float32", "_type": "Value"}, "length": 2, "_type": "List"}
    assert all(pa.types.is_fixed_size_list(data.schema.field(k).type) or data.schema.field(k).type.num_fields == 2
               or data.schema.field(k).type in (pa.float32(), pa.int64(), pa.bool_()) for k in data.column_names), \
        "every feature is a scalar, a vector or an image"


def test_ground_truth_is_stored_flat_and_loaded_shaped(pusht_images):
    feature = json.loads((pusht_images / "meta/info.json").read_text())["features"]["groundtruth.keypoints_xyz"]
    assert feature["shape"] == [9] and feature["names"][:4] == ["pusher.x", "pusher.y", "pusher.z", "block.x"]
    frames = LeRobotDataset.load(pusht_images).frames
    assert frames["groundtruth.keypoints_xyz"].shape[1:] == (3, 3)
    assert frames["groundtruth.keypoints_uv"].shape[1:] == (3, 2)
    assert np.allclose(frames["groundtruth.keypoints_xyz"][:, 0, :2], frames["observation.state"]), "pusher row"


def test_statistics_carry_exact_quantiles(pusht_images):
    dataset = LeRobotDataset.load(pusht_images)
    action = np.asarray(dataset.frames["action"], np.float64)
    for name, q in QUANTILES.items():
        assert np.allclose(dataset.stats["action"][name], np.quantile(action, q, axis=0))
    images = dataset.frames["observation.image"][:7]  # from the uint8 histograms; equal to np.quantile of pixels
    stats = feature_stats(images, {"dtype": "image", "shape": [96, 96, 3]})
    pixels = images.reshape(-1, 3) / 255.0
    for name, q in QUANTILES.items():
        assert np.allclose(np.ravel(stats[name]), np.quantile(pixels, q, axis=0))
    assert np.allclose(np.ravel(stats["std"]), pixels.std(0)) and stats["count"] == [7]


def test_both_tasks_table_layouts_read(pusht_images, tmp_path):
    """LeRobot 0.4 writes the task text as an unnamed pandas index (``__index_level_0__``), 0.6 as ``task``."""
    shutil.copytree(pusht_images, tmp_path / "d")
    path = tmp_path / "d/meta/tasks.parquet"
    pandas = {"index_columns": ["__index_level_0__"], "columns": []}
    pq.write_table(pa.table({"task_index": [0], "__index_level_0__": ["pusht"]})
                   .replace_schema_metadata({"pandas": json.dumps(pandas)}), path)
    assert read_tasks(tmp_path / "d") == ["pusht"]
    pq.write_table(pa.table({"task_index": [0]}), path)
    with pytest.raises(DatasetError, match="holds no task text"):
        read_tasks(tmp_path / "d")


def test_video_round_trip(pusht_images, pusht_video):
    """``wam collect --video`` stores AV1 mp4 (as LeRobot does) that decodes back close to the PNG frames."""
    assert check_dataset(pusht_video) == []
    info = json.loads((pusht_video / "meta/info.json").read_text())
    assert info["features"]["observation.image"]["dtype"] == "video"
    assert "observation.image" not in pq.read_table(pusht_video / "data/chunk-000/file-000.parquet").column_names
    png = LeRobotDataset.load(pusht_images).frames["observation.image"].astype(np.float64)
    video = LeRobotDataset.load(pusht_video).frames["observation.image"].astype(np.float64)
    assert png.shape == video.shape
    psnr = 10 * np.log10(255 ** 2 / ((png - video) ** 2).mean())
    assert psnr > 30, f"{psnr:.1f} dB"  # measured 37 dB at LeRobot's CRF 30


def test_a_damaged_video_is_one_clear_error(pusht_video, tmp_path):
    shutil.copytree(pusht_video, tmp_path / "d")
    mp4 = tmp_path / "d/videos/observation.image/chunk-000/file-000.mp4"
    mp4.write_bytes(mp4.read_bytes()[:300])
    with pytest.raises(DatasetError, match="file-000.mp4"):
        LeRobotDataset.load(tmp_path / "d")
    assert_one_line_error(wam_refused("train", "--preset", "vla", "--data", tmp_path / "d", "--out", tmp_path / "r"),
                          "file-000.mp4")


def test_what_lerobot_tools_drop_is_not_needed(pusht_images, tmp_path, capsys):
    """Without the ``wam`` block the suite follows from the features; without ``seed`` and ``success`` the data
    trains (every episode counts as a demonstration) and evaluation says it cannot check its seeds."""
    root = tmp_path / "d"
    shutil.copytree(pusht_images, root)
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    del info["wam"]
    info_path.write_text(json.dumps(info))
    assert dataset_suite(info, info_path) == "pusht"
    episodes = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    pq.write_table(pq.read_table(episodes).drop_columns(["seed", "success"]), episodes)
    assert all("seed" not in e for e in read_episodes(root)) and check_dataset(root) == []
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.json").write_text(json.dumps({"data": str(root)}))
    check_seeds_disjoint(run, {10**6})
    assert "records no seed per episode" in capsys.readouterr().err
    info["features"]["action"]["shape"] = [3]
    with pytest.raises(DatasetError, match="match none of the registered suites"):
        dataset_suite(info, info_path)
