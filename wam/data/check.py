"""``wam data check DIR``: validate a dataset against its ``meta/info.json`` and report every problem found;
``wam data stats DIR``: recompute ``meta/stats.json`` from the frames.

``LeRobotDataset.load`` stops at the first problem; the check reads everything it can and lists all of them
(schema, shapes, values, index and episode continuity, task table, counts, statistics), each with the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import tyro

from wam.data.lerobot import (
    ALL_STATS,
    DTYPES,
    INDEX_FEATURES,
    PICTURES,
    QUANTILES,
    STATS,
    DatasetError,
    LeRobotDataset,
    compute_stats,
    decode_png,
    feature_problem,
    read_episodes,
    read_table,
    read_tasks,
)
from wam.io import atomic_write_json

INFO_KEYS = ("codebase_version", "features", "fps", "total_frames", "total_episodes", "total_tasks")
STATS_KEYS = (*STATS, "count")  # what the check recomputes and compares; quantiles are checked for sense
STATS_TOLERANCE = 1e-4
IMAGE_STATS_TOLERANCE = 0.02  # LeRobot's writer estimates image statistics from a sample of the frames


@dataclass
class DataConfig:
    """Check a dataset against its meta/info.json (every problem is listed), or recompute its statistics."""

    action: tyro.conf.Positional[Literal["check", "stats"]]
    """check: validate and report; stats: rewrite meta/stats.json from the frames (after a check)."""
    root: tyro.conf.Positional[Path]
    """Dataset directory written by `wam collect`."""


def check_dataset(root: str | Path) -> list[str]:
    """Every problem found in the dataset at ``root`` (empty when it is sound), each naming the file."""
    root = Path(root)
    info_path = root / "meta/info.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as e:
        return [f"{info_path}: missing or not valid JSON ({e}); collect the dataset again with `wam collect`"]
    if not isinstance(info, dict):
        return [f"{info_path}: holds {type(info).__name__}, not a JSON object; collect the dataset again with "
                "`wam collect`"]
    problems = [f"{info_path}: lacks {k!r}" for k in INFO_KEYS if k not in info]
    features = info.get("features") if isinstance(info.get("features"), dict) else {}
    problems += _check_schema(info_path, features)
    features = {k: f for k, f in features.items() if not feature_problem(f)}

    stored = {k: f for k, f in features.items() if f["dtype"] != "video"}  # video frames live in mp4 files
    columns, data_problems = _read_columns(root, stored)
    problems += data_problems
    videos = {k: f for k, f in features.items() if f["dtype"] == "video"}
    if videos and not data_problems:
        try:
            LeRobotDataset.read_frames(root, videos)
        except DatasetError as e:
            problems.append(str(e))
    n = len(columns["index"]) if "index" in columns else None
    if n is not None and n != info.get("total_frames"):
        problems.append(f"{info_path}: declares {info.get('total_frames')} frames, the data files hold {n}")
    problems += _check_index(root, columns, info.get("fps"))

    tasks = _read_tasks(root, problems)
    if tasks is not None and len(tasks) != info.get("total_tasks"):
        problems.append(f"{info_path}: declares {info.get('total_tasks')} tasks, meta/tasks.parquet holds {len(tasks)}")
    if tasks is not None and "task_index" in columns and len(columns["task_index"]):
        bad = np.flatnonzero((columns["task_index"] < 0) | (columns["task_index"] >= len(tasks)))
        if len(bad):
            problems.append(f"{root}/data: task_index out of range [0, {len(tasks)}) at frame {bad[0]} "
                            f"({len(bad)} frames)")
    problems += _check_episodes(root, info, columns)
    if not problems:
        problems += _check_stats(root, info["features"])
    return problems


def recompute_stats(root: str | Path) -> dict[str, Any]:
    """Rewrite ``meta/stats.json`` from the frames (atomically) and return it; the dataset must pass the check."""
    root = Path(root)
    problems = [p for p in check_dataset(root) if "meta/stats.json" not in p]
    if problems:
        raise DatasetError(f"{root} has {_count(problems)} besides its statistics (first: {problems[0]}); run "
                           "`wam data check` and collect the dataset again")
    info = json.loads((root / "meta/info.json").read_text())
    stats = compute_stats(root, info["features"])
    atomic_write_json(root / "meta/stats.json", stats)
    return stats


def _count(problems: list[str]) -> str:
    return f"{len(problems)} problem{'s' * (len(problems) != 1)}"


def _check_schema(info_path: Path, features: dict[str, Any]) -> list[str]:
    problems = [f"{info_path}: feature {k!r} {p}" for k, f in features.items() if (p := feature_problem(f))]
    required = ("index", "episode_index", "frame_index", "timestamp", "task_index")  # no action: a video-only dataset
    return problems + [f"{info_path}: lacks the {k!r} feature" for k in required if k not in features]


def _read_columns(root: Path, features: dict[str, Any]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The declared features concatenated over the data files, with every file-level problem."""
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        return {}, [f"{root}/data: holds no parquet files"]
    problems: list[str] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in features}
    for path in files:
        try:
            table = read_table(path)
        except DatasetError as e:
            problems.append(str(e))
            parts = {k: [] for k in features}  # frame positions are lost: skip the per-frame checks
            continue
        extra = sorted(set(table.column_names) - set(features))
        if extra:
            problems.append(f"{path}: columns {extra} are not declared in meta/info.json")
        for key, feature in features.items():
            if key not in table.column_names:
                problems.append(f"{path}: lacks the declared feature {key!r}")
                continue
            array, problem = _column_array(table.column(key), feature)
            if problem:
                problems.append(f"{path}: feature {key!r} {problem}")
            elif array is not None:
                parts[key].append(array)
    counts = {len(v) for v in parts.values()}
    if problems or len(counts) != 1:
        return {}, problems
    return {k: np.concatenate(v) for k, v in parts.items()}, problems


def _column_array(column: pa.ChunkedArray, feature: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    shape = tuple(feature["shape"]) if feature["shape"] != [1] else ()
    try:
        if feature["dtype"] == "image":
            values = column.to_pylist()
            images = [decode_png(v["bytes"]) if isinstance(v, dict) and v.get("bytes") else None for v in values]
            bad = [i for i, x in enumerate(images) if x is None or x.shape != shape]
            if bad:
                return None, (f"holds images that are missing, undecodable or not of shape {list(shape)} "
                              f"(first at row {bad[0]})")
            return np.stack(images) if images else np.zeros((0, *shape), np.uint8), None
        array = np.asarray(column.to_pylist() if shape else column.to_numpy(zero_copy_only=False))
    except (ValueError, TypeError, KeyError, OSError, pa.ArrowException) as e:
        return None, f"cannot be read as {feature['dtype']} {list(shape)} ({str(e).splitlines()[0][:120]})"
    if array.shape[1:] != shape:
        return None, f"has shape {list(array.shape[1:])} per frame, meta/info.json declares {feature['shape']}"
    kind = np.dtype(DTYPES[feature["dtype"]]).kind
    if array.dtype.kind != kind and not (kind == "f" and array.dtype.kind in "iu"):
        return None, f"holds {array.dtype} values, meta/info.json declares {feature['dtype']}"
    if kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).reshape(len(array), -1).any(1).argmax())
        return None, f"holds NaN or inf (first at row {bad})"
    return array.astype(DTYPES[feature["dtype"]]), None


def _check_index(root: Path, columns: dict[str, np.ndarray], fps: Any) -> list[str]:
    if not columns:
        return []
    problems = []
    index, episode, frame = columns["index"], columns["episode_index"], columns["frame_index"]
    if not np.array_equal(index, np.arange(len(index))):
        at = int(np.flatnonzero(index != np.arange(len(index)))[0])
        problems.append(f"{root}/data: 'index' is not 0..{len(index) - 1} in order (first break at frame {at})")
    starts = np.flatnonzero(np.diff(episode, prepend=-1) != 0)
    if not np.array_equal(episode[starts], np.arange(len(starts))):
        problems.append(f"{root}/data: episodes are not 0, 1, 2, ... each in one contiguous run "
                        f"(found {episode[starts][:8].tolist()}...)")
    expected_frame = np.arange(len(frame)) - np.repeat(starts, np.diff(np.append(starts, len(frame))))
    if not np.array_equal(frame, expected_frame):
        at = int(np.flatnonzero(frame != expected_frame)[0])
        problems.append(f"{root}/data: 'frame_index' does not count 0, 1, ... within each episode (first at frame {at})")
    if isinstance(fps, (int, float)) and fps > 0 and not np.allclose(columns["timestamp"], expected_frame / fps,
                                                                     atol=1e-4):
        problems.append(f"{root}/data: 'timestamp' is not frame_index / fps ({fps})")
    return problems


def _read_tasks(root: Path, problems: list[str]) -> list[str] | None:
    try:
        return read_tasks(root)
    except DatasetError as e:
        problems.append(str(e))
        return None


def _check_episodes(root: Path, info: dict[str, Any], columns: dict[str, np.ndarray]) -> list[str]:
    try:
        episodes = read_episodes(root)
    except DatasetError as e:
        return [str(e)]
    where = f"{root}/meta/episodes"
    problems = []
    if len(episodes) != info.get("total_episodes"):
        problems.append(f"{where}: holds {len(episodes)} episodes, meta/info.json declares {info.get('total_episodes')}")
    position = 0
    for i, e in enumerate(episodes):
        start, stop, length = e.get("dataset_from_index"), e.get("dataset_to_index"), e.get("length")
        if e.get("episode_index") != i or start != position or None in (stop, length) or stop - start != length:
            problems.append(f"{where}: episode row {i} ({e.get('episode_index')=}, from {start}, to {stop}, "
                            f"length {length}) does not follow on from the row before")
            break
        if columns and not (columns["episode_index"][start:stop] == i).all():
            problems.append(f"{where}: episode {i} spans frames {start}:{stop} but the data files disagree")
            break
        position = stop
    if columns and position != len(columns["index"]) and not problems:
        problems.append(f"{where}: episodes cover {position} frames, the data files hold {len(columns['index'])}")
    return problems


def _check_stats(root: Path, features: dict[str, Any]) -> list[str]:
    path = root / "meta/stats.json"
    fix = "recompute it with `wam data stats`"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"{path}: missing or not valid JSON ({e}); {fix}"]
    if not isinstance(stored, dict):
        return [f"{path}: not a JSON object; {fix}"]
    # The bookkeeping columns are never normalized, and LeRobot's tools leave their statistics stale.
    fresh = compute_stats(root, {k: f for k, f in features.items() if k not in INDEX_FEATURES})
    problems = []
    for key, stats in fresh.items():
        have = stored.get(key)
        if not isinstance(have, dict) or any(k not in have for k in ALL_STATS):
            problems.append(f"{path}: feature {key!r} lacks some of {list(ALL_STATS)}; {fix}")
            continue
        dtype = features[key]["dtype"]
        tolerance = IMAGE_STATS_TOLERANCE if dtype in PICTURES else STATS_TOLERANCE
        # Decoded video differs from the frames it was encoded from, whose min and max a writer may have kept.
        for name in ("mean", "std", "count") if dtype == "video" else STATS_KEYS:
            try:
                close = np.allclose(np.asarray(have[name], float), np.asarray(stats[name], float),
                                    rtol=tolerance, atol=tolerance)
            except (ValueError, TypeError):
                close = False
            if not close:
                problems.append(f"{path}: {key!r} {name} does not match the frames; {fix}")
        if not _quantiles_make_sense([have[q] for q in QUANTILES], stats, tolerance):
            problems.append(f"{path}: {key!r} quantiles {list(QUANTILES)} are not finite, ordered values between "
                            f"min and max of the feature's shape; {fix}")
    return problems


def _quantiles_make_sense(stored: list[Any], fresh: dict[str, Any], tolerance: float) -> bool:
    """Quantiles are estimated (LeRobot's writer bins the values), so they are checked for sense, not equality."""
    low, high = np.asarray(fresh["min"], float), np.asarray(fresh["max"], float)
    try:
        q = np.stack([np.asarray(v, float) for v in stored])
    except (ValueError, TypeError):
        return False
    return (q.shape[1:] == low.shape and bool(np.isfinite(q).all()) and bool((np.diff(q, axis=0) >= -tolerance).all())
            and bool((q >= low - tolerance).all() and (q <= high + tolerance).all()))


def run_data(cfg: DataConfig) -> list[str]:
    """Run ``wam data``; prints the report and returns the problems (``check``) or [] (``stats``)."""
    if cfg.action == "stats":
        stats = recompute_stats(cfg.root)
        print(f"wrote {cfg.root}/meta/stats.json ({len(stats)} features)")
        return []
    problems = check_dataset(cfg.root)
    if problems:
        print(f"{cfg.root}: {_count(problems)}")
        for p in problems:
            print(f"  - {p}")
    else:
        dataset = LeRobotDataset.load(cfg.root)
        print(f"{cfg.root}: ok ({len(dataset.episodes)} episodes, {dataset.num_frames} frames, "
              f"{len(dataset.tasks)} tasks, {len(dataset.features)} features)")
    return problems
