"""`wam data check` lists every problem of a damaged dataset; `wam data stats` recomputes the statistics."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import wam_cli
from wam.data.check import check_dataset, recompute_stats
from wam.data.lerobot import DatasetError, LeRobotDataset

pytestmark = pytest.mark.reliability
DATA_FILE = "data/chunk-000/file-000.parquet"


@pytest.fixture
def copy(tmp_path, vision_data):
    shutil.copytree(vision_data, tmp_path / "d")
    return tmp_path / "d"


def edit_column(root, key, edit):
    path = root / DATA_FILE
    table = pq.read_table(path)
    values = table.column(key).to_numpy().copy()
    edit(values)
    pq.write_table(table.set_column(table.column_names.index(key), key, pa.array(values)), path)


def edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_sound_dataset_passes(vision_data):
    assert check_dataset(vision_data) == []
    result = wam_cli("data", "check", vision_data)
    assert result.returncode == 0 and ": ok (4 episodes" in result.stdout, result.stdout + result.stderr


def test_every_problem_is_reported_at_once(copy):
    edit_column(copy, "next.reward", lambda v: v.__setitem__(3, np.inf))
    edit_json(copy / "meta/info.json", lambda i: i.update(total_tasks=5))
    edit_json(copy / "meta/info.json", lambda i: i["features"]["observation.state"].update(shape=[-2]))
    problems = check_dataset(copy)
    assert any("'next.reward' holds NaN or inf (first at row 3)" in p for p in problems), problems
    assert any("declares 5 tasks, meta/tasks.parquet holds 2" in p for p in problems), problems
    assert any("'observation.state' has shape [-2]" in p for p in problems), problems
    result = wam_cli("data", "check", copy)
    assert result.returncode == 1 and f"{len(problems)} problems" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda d: edit_column(d, "index", lambda v: v.__setitem__(7, 99)), "'index' is not 0.."),
    (lambda d: edit_column(d, "frame_index", lambda v: v.__setitem__(2, 0)), "'frame_index' does not count"),
    (lambda d: edit_column(d, "episode_index", lambda v: v.__setitem__(slice(0, 5), 1)), "episodes are not 0, 1, 2"),
    (lambda d: edit_column(d, "task_index", lambda v: v.__setitem__(0, 9)), "task_index out of range [0, 2)"),
    (lambda d: edit_column(d, "timestamp", lambda v: v.__setitem__(4, -1.0)), "'timestamp' is not frame_index / fps"),
    (lambda d: edit_json(d / "meta/info.json", lambda i: i.update(total_frames=3)), "declares 3 frames"),
    (lambda d: edit_json(d / "meta/info.json", lambda i: i["features"]["action"].update(dtype="complex")),
     "'action' has dtype 'complex'"),
    (lambda d: edit_json(d / "meta/info.json", lambda i: i["features"].pop("task_index")), "lacks the 'task_index'"),
    (lambda d: edit_json(d / "meta/stats.json", lambda s: s["action"].update(mean=[9, 9, 9, 9])),
     "'action' mean does not match the frames; recompute it with `wam data stats`"),
    (lambda d: (d / "meta/tasks.parquet").write_bytes(b"PAR1 junk"), "meta/tasks.parquet is corrupt or truncated"),
    (lambda d: (d / DATA_FILE).write_bytes((d / DATA_FILE).read_bytes()[:5000]), "file-000.parquet is corrupt or truncated"),
    (lambda d: (d / "meta/info.json").write_text("{"), "meta/info.json: missing or not valid JSON"),
    (lambda d: (d / "meta/info.json").write_text("2"), "meta/info.json: holds int, not a JSON object"),
    (lambda d: (d / "meta/stats.json").write_text("[]"), "meta/stats.json: not a JSON object"),
])
def test_each_damage_is_named(copy, damage, message):
    damage(copy)
    problems = check_dataset(copy)
    assert any(message in p for p in problems), problems


def test_stats_are_recomputed(copy, vision_data):
    edit_json(copy / "meta/stats.json", lambda s: s.pop("action"))
    assert any("'action' lacks some of" in p for p in check_dataset(copy))
    result = wam_cli("data", "stats", copy)
    assert result.returncode == 0, result.stderr
    assert check_dataset(copy) == []
    assert LeRobotDataset.load(copy).stats == LeRobotDataset.load(vision_data).stats


def test_stats_are_not_recomputed_over_a_broken_dataset(copy):
    edit_column(copy, "index", lambda v: v.__setitem__(7, 99))
    before = (copy / "meta/stats.json").read_bytes()
    with pytest.raises(DatasetError, match=r"\d+ problems? besides its statistics"):
        recompute_stats(copy)
    assert (copy / "meta/stats.json").read_bytes() == before
