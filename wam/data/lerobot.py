"""Datasets on disk in the LeRobotDataset v3 layout, written crash-safely and read back with clear errors.

Layout (``ROOT`` is the ``--out`` directory)::

    meta/info.json                         features (dtype, shape, names), fps, counts, path templates
    meta/stats.json                        min / max / mean / std / count per feature (images per channel, in [0, 1])
    meta/tasks.parquet                     task string -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, index range, data file, seed, task
    data/chunk-XXX/file-XXX.parquet        frames, episodes concatenated, images as PNG bytes ({bytes, path})

Writers first put every finished episode in ``staging/`` with an atomic rename; ``finalize`` then concatenates
them in episode order into the data files, writes the metadata and writes ``meta/info.json`` last, so a dataset
with an ``info.json`` is complete. A crash at any point leaves either finished staged episodes or a complete
dataset, and re-running the same collection picks up from there.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wam.io import atomic_write_bytes, atomic_write_json

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STAGING = "staging"

# Per-frame bookkeeping columns every LeRobot dataset has.
INDEX_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}


DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_, "image": np.uint8}
STATS = ("min", "max", "mean", "std")
"""The per-feature statistics every dataset carries in ``meta/stats.json`` (normalization reads them)."""

# The columns each metadata table must hold, with the Arrow type each must have; a reader checks them all.
TASKS_COLUMNS = {"task_index": pa.types.is_integer, "task": pa.types.is_string}
EPISODES_COLUMNS = {"episode_index": pa.types.is_integer, "tasks": pa.types.is_list, "length": pa.types.is_integer,
                    "dataset_from_index": pa.types.is_integer, "dataset_to_index": pa.types.is_integer,
                    "seed": pa.types.is_integer, "success": pa.types.is_boolean}


class DatasetError(RuntimeError):
    """A dataset that is missing, corrupt or does not match what the caller expects."""


def feature_problem(feature: Any) -> str | None:
    """What is wrong with a feature declaration of ``meta/info.json`` (None: nothing)."""
    if not isinstance(feature, dict):
        return "is not an object"
    if not isinstance(feature.get("dtype"), str) or feature["dtype"] not in DTYPES:
        return f"has dtype {feature.get('dtype')!r}, not one of {sorted(DTYPES)}"
    shape = feature.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and 0 < d < 2**16 for d in shape):
        return f"has shape {shape!r}, not a list of positive sizes"
    if feature["dtype"] == "image" and (len(shape) != 3 or shape[2] != 3):
        return f"is an image of shape {shape}, not [H, W, 3]"
    return None


def _atomic_write_table(path: Path, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _arrow_type(feature: dict[str, Any]) -> pa.DataType:
    if feature["dtype"] == "image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    scalar = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[feature["dtype"]]
    shape = feature["shape"]
    if shape == [1]:
        return scalar
    for size in reversed(shape):
        scalar = pa.list_(scalar, size)
    return scalar


def _column(values: list[Any], feature: dict[str, Any]) -> pa.Array:
    if feature["dtype"] == "image":
        return pa.array([{"bytes": encode_png(v), "path": None} for v in values], type=_arrow_type(feature))
    array = np.asarray(values)
    if feature["shape"] != [1]:
        array = array.reshape(len(values), *feature["shape"])
        return pa.array(array.tolist(), type=_arrow_type(feature))
    return pa.array(array.reshape(-1), type=_arrow_type(feature))


def write_staged_episode(root: Path, episode_index: int, frames: dict[str, list[Any]],
                         features: dict[str, dict[str, Any]], meta: dict[str, Any]) -> Path:
    """Atomically write one finished episode to ``staging/``; ``meta`` (task, seed, ...) goes in the file footer."""
    columns = {key: _column(frames[key], features[key]) for key in features if key in frames}
    table = pa.table(columns).replace_schema_metadata({"wam.episode": json.dumps(meta)})
    path = root / STAGING / f"episode-{episode_index:06d}.parquet"
    _atomic_write_table(path, table)
    return path


def read_staged_meta(path: Path) -> dict[str, Any] | None:
    """The footer metadata of a staged episode, or None if the file is unreadable (then it is collected again)."""
    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[b"wam.episode"])
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None


def finalize(root: Path, features: dict[str, dict[str, Any]], fps: float, robot_type: str,
             extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble staged episodes into the v3 layout; ``info.json`` is written last and marks completion."""
    staged = sorted((root / STAGING).glob("episode-*.parquet"))
    if not staged:
        raise DatasetError(f"{root}: nothing to finalize (no staged episodes)")
    tasks: dict[str, int] = {}
    episode_rows: list[dict[str, Any]] = []
    data_tables: list[pa.Table] = []
    file_index, file_bytes, start = 0, 0, 0
    shutil.rmtree(root / "data", ignore_errors=True)

    def flush() -> None:
        nonlocal data_tables, file_index, file_bytes
        if data_tables:
            path = root / DATA_PATH.format(chunk_index=file_index // CHUNKS_SIZE, file_index=file_index % CHUNKS_SIZE)
            _atomic_write_table(path, pa.concat_tables(data_tables))
            data_tables, file_index, file_bytes = [], file_index + 1, 0

    for episode_index, path in enumerate(staged):
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"wam.episode"])
        task_index = tasks.setdefault(meta["task"], len(tasks))
        n = table.num_rows
        table = table.replace_schema_metadata(None)
        table = table.append_column("timestamp", pa.array(np.arange(n, dtype=np.float32) / fps))
        table = table.append_column("frame_index", pa.array(np.arange(n, dtype=np.int64)))
        table = table.append_column("episode_index", pa.array(np.full(n, episode_index, dtype=np.int64)))
        table = table.append_column("index", pa.array(np.arange(start, start + n, dtype=np.int64)))
        table = table.append_column("task_index", pa.array(np.full(n, task_index, dtype=np.int64)))
        if file_bytes and file_bytes + table.nbytes > DATA_FILE_MB * 2**20:
            flush()
        data_tables.append(table)
        file_bytes += table.nbytes
        episode_rows.append({"episode_index": episode_index, "tasks": [meta["task"]], "length": n,
                             "data/chunk_index": file_index // CHUNKS_SIZE, "data/file_index": file_index % CHUNKS_SIZE,
                             "dataset_from_index": start, "dataset_to_index": start + n,
                             "seed": meta["seed"], "success": meta["success"]})
        start += n
    flush()

    all_features = {**features, **INDEX_FEATURES}
    _atomic_write_table(root / EPISODES_PATH.format(chunk_index=0, file_index=0), pa.Table.from_pylist(episode_rows))
    _atomic_write_table(root / "meta/tasks.parquet",
                        pa.table({"task_index": list(tasks.values()), "task": list(tasks)}))
    atomic_write_json(root / "meta/stats.json", compute_stats(root, all_features))
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type,
        "total_episodes": len(episode_rows), "total_frames": start, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": 0,
        "fps": fps, "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": DATA_PATH, "video_path": None, "features": all_features, **(extra_info or {}),
    }
    atomic_write_json(root / "meta/info.json", info)
    shutil.rmtree(root / STAGING, ignore_errors=True)
    return info


def compute_stats(root: Path, features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-feature statistics over every frame; image statistics are per channel on the [0, 1] scale."""
    data = LeRobotDataset.read_frames(root, features)
    stats: dict[str, dict[str, Any]] = {}
    for key, array in data.items():
        if features[key]["dtype"] == "image":
            x = array.reshape(-1, 3).astype(np.float64) / 255.0
            axis_stats = [x.min(0), x.max(0), x.mean(0), x.std(0)]
            axis_stats = [s.reshape(3, 1, 1) for s in axis_stats]
        else:
            x = array.astype(np.float64).reshape(len(array), -1) if array.ndim > 1 else array.astype(np.float64)[:, None]
            axis_stats = [s.reshape(features[key]["shape"]) for s in (x.min(0), x.max(0), x.mean(0), x.std(0))]
        stats[key] = {name: s.tolist() for name, s in zip(("min", "max", "mean", "std"), axis_stats)}
        stats[key]["count"] = [len(array)]
    return stats


@dataclass
class LeRobotDataset:
    """A finished dataset loaded into memory: frame arrays per feature, episode table, tasks and stats."""

    root: Path
    info: dict[str, Any]
    stats: dict[str, dict[str, Any]]
    frames: dict[str, np.ndarray]
    episodes: list[dict[str, Any]]
    tasks: list[str]  # position = task_index

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    @property
    def suite(self) -> str:
        """The suite the episodes come from (``meta/info.json`` ``wam.suite``; datasets from before suites were
        MetaWorld's)."""
        return dataset_suite(self.info, self.root / "meta/info.json")

    @classmethod
    def load(cls, root: str | Path) -> LeRobotDataset:
        """Load and check a dataset; every problem raises ``DatasetError`` naming the file and the fix."""
        root = Path(root)
        info_path = root / "meta/info.json"
        if not info_path.exists():
            hint = (" (an unfinished collection: re-run the same `wam collect` command to finish it)"
                    if (root / STAGING).exists() else " (create one with `wam collect`)")
            raise DatasetError(f"{root} is not a wam dataset: {info_path} is missing{hint}")
        info = _read_json(info_path)
        if not isinstance(info, dict) or not isinstance(info.get("features"), dict) or "total_frames" not in info:
            raise DatasetError(f"{info_path} lacks 'features' or 'total_frames'; rebuild the dataset with `wam collect`")
        for key, feature in info["features"].items():
            if problem := feature_problem(feature):
                raise DatasetError(f"{info_path}: feature {key!r} {problem}; run `wam data check {root}` for every "
                                   "problem, then collect the dataset again")
        dataset_suite(info, info_path)
        frames = cls.read_frames(root, info["features"])
        stats = _read_stats(root / "meta/stats.json", info["features"])
        episodes = read_episodes(root)
        tasks = read_tasks(root)
        n = len(frames["index"])
        if n != info["total_frames"] or len(episodes) != info["total_episodes"]:
            raise DatasetError(f"{root}: data holds {n} frames / {len(episodes)} episodes but meta/info.json declares "
                               f"{info['total_frames']} / {info['total_episodes']}; the dataset is incomplete, "
                               "collect it again into a fresh --out directory")
        _check_episode_ranges(root, episodes, n)
        task_index = frames.get("task_index")
        if task_index is not None and len(task_index) and not 0 <= task_index.min() <= task_index.max() < len(tasks):
            raise DatasetError(f"{root}: frames refer to task indices outside the {len(tasks)} tasks of "
                               "meta/tasks.parquet; "
                               "the dataset is corrupt, collect it again")
        return cls(root, info, stats, frames, episodes, tasks)

    @staticmethod
    def read_frames(root: Path, features: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        """Read every data file into one numpy array per feature (images decoded to uint8 ``[N, H, W, 3]``)."""
        files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{root}/data holds no parquet files; collect the dataset again with `wam collect`")
        tables = [read_table(f) for f in files]
        out: dict[str, np.ndarray] = {}
        for key, feature in features.items():
            missing = [str(f) for f, t in zip(files, tables) if key not in t.column_names]
            if missing:
                raise DatasetError(f"feature {key!r} declared in meta/info.json is missing from {missing[0]}; "
                                   "the dataset is corrupt, collect it again")
            column = pa.chunked_array([c for t in tables for c in t.column(key).chunks])
            try:
                if feature["dtype"] == "image":
                    out[key] = np.stack([decode_png(v["bytes"]) for v in column.to_pylist()])
                else:
                    array = np.asarray(column.to_pylist() if feature["shape"] != [1] else column.to_numpy())
                    out[key] = array.astype(DTYPES[feature["dtype"]])
            except (ValueError, TypeError, KeyError, OSError, pa.ArrowException) as e:
                raise DatasetError(f"feature {key!r} cannot be read as {feature['dtype']} {feature['shape']} "
                                   f"({str(e).splitlines()[0][:120]}); the dataset is corrupt, run `wam data check "
                                   f"{root}` and collect it again") from None
            if out[key].dtype == np.float32 and not np.isfinite(out[key]).all():
                bad = int((~np.isfinite(out[key])).reshape(len(out[key]), -1).any(1).argmax())
                raise DatasetError(f"feature {key!r} holds NaN or inf values (first at frame {bad}); the dataset is "
                                   "corrupt, collect it again")
            expected = tuple(feature["shape"]) if feature["shape"] != [1] else ()
            if out[key].shape[1:] != expected:
                raise DatasetError(f"feature {key!r} has shape {list(out[key].shape[1:])} in the data files but "
                                   f"{feature['shape']} in meta/info.json; the dataset is corrupt, collect it again")
        return out


def dataset_suite(info: dict[str, Any], path: Path) -> str:
    """The registered suite named by the ``meta/info.json`` at ``path`` (``DatasetError`` for one this installation
    lacks); datasets from before suites were MetaWorld's."""
    from wam.envs import DEFAULT_SUITE, SUITES

    wam = info.get("wam")
    name = wam.get("suite", DEFAULT_SUITE) if isinstance(wam, dict) else DEFAULT_SUITE
    if not isinstance(name, str) or name not in SUITES:
        raise DatasetError(f"{path}: wam.suite {name!r} is not a registered suite ({', '.join(SUITES)})")
    return name


def read_episodes(root: str | Path) -> list[dict[str, Any]]:
    """The episode table (one dict per episode) without loading any frame."""
    return _read_rows(Path(root) / EPISODES_PATH.format(chunk_index=0, file_index=0), EPISODES_COLUMNS)


def read_tasks(root: str | Path) -> list[str]:
    """The task strings of ``meta/tasks.parquet``, position = task index."""
    path = Path(root) / "meta/tasks.parquet"
    rows = sorted((r["task_index"], r["task"]) for r in _read_rows(path, TASKS_COLUMNS))
    if [i for i, _ in rows] != list(range(len(rows))):
        raise DatasetError(f"{path}: task indices {[i for i, _ in rows][:8]} are not 0..N-1; the file is corrupt, "
                           "collect the dataset again")
    return [t for _, t in rows]


def _check_episode_ranges(root: Path, episodes: list[dict[str, Any]], n_frames: int) -> None:
    """Every episode covers a non-empty range of the ``n_frames`` frames, as long as its declared length."""
    for e in episodes:
        lo, hi = e["dataset_from_index"], e["dataset_to_index"]
        if not 0 <= lo < hi <= n_frames or hi - lo != e["length"]:
            raise DatasetError(f"{root}: episode {e['episode_index']} declares frames [{lo}, {hi}) of length "
                               f"{e['length']} in meta/episodes, outside the {n_frames} frames of the data; the "
                               "dataset is corrupt, collect it again")


def read_table(path: Path, columns: dict[str, Any] | None = None) -> pa.Table:
    """The parquet table at ``path``; with ``columns`` (name -> Arrow type test), each must be present, of its type
    and without nulls. Any damage raises ``DatasetError`` naming the file."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; the dataset is incomplete, collect it again with `wam collect`") from None
    # Damaged bytes surface from Arrow's decoders as its own errors, or as decoding errors of the schema's text.
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as e:
        message = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DatasetError(f"{path} is corrupt or truncated ({message}); delete the dataset and collect it again "
                           "with `wam collect`") from None
    for name, is_type in (columns or {}).items():
        if name not in table.column_names:
            raise DatasetError(f"{path} lacks the column {name!r}; the file is corrupt, collect the dataset again")
        column = table.column(name)
        if not is_type(column.type) or column.null_count:
            raise DatasetError(f"{path}: column {name!r} holds {column.type} with {column.null_count} nulls, not "
                               "the type it is written with; the file is corrupt, collect the dataset again")
    return table


def _read_rows(path: Path, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a metadata table (see ``_read_table``) as dicts; undecodable values raise ``DatasetError``."""
    table = read_table(path, columns)
    try:
        return table.to_pylist()
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as e:  # e.g. text that is not UTF-8
        raise DatasetError(f"{path} holds values that cannot be decoded ({str(e).splitlines()[0][:160]}); the file "
                           "is corrupt, collect the dataset again") from None


def _read_stats(path: Path, features: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``meta/stats.json``, checked: every declared feature has finite min/max/mean/std of the shape it is written
    with (per channel ``[3, 1, 1]`` for images), so normalization can never read a broken statistic."""
    stats = _read_json(path)
    if not isinstance(stats, dict):
        raise DatasetError(f"{path} is not a JSON object; recompute it with `wam data stats {path.parent.parent}`")
    for key, feature in features.items():
        shape = (feature["shape"][-1], 1, 1) if feature["dtype"] == "image" else tuple(feature["shape"])
        entry = stats.get(key)
        for stat in STATS:
            value = entry.get(stat) if isinstance(entry, dict) else None
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                array = None
            if array is None or array.shape != shape or not np.isfinite(array).all():
                raise DatasetError(f"{path}: {key!r} lacks a finite {stat!r} of shape {list(shape)}; recompute the "
                                   f"statistics with `wam data stats {path.parent.parent}`")
    return stats


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; collect the dataset again with `wam collect`") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is not valid JSON ({e}); collect the dataset again with `wam collect`") from None
