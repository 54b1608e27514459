"""Datasets on disk in the LeRobotDataset v3 layout, written crash-safely and read back with clear errors.

Layout (``ROOT`` is the ``--out`` directory)::

    meta/info.json                         features (dtype, shape, names), fps, counts, path templates
    meta/stats.json                        min / max / mean / std / count / q01..q99 per feature (images per
                                           channel, in [0, 1])
    meta/tasks.parquet                     task_index, indexed by the task string (pandas index ``task``)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, index range, data and metadata file,
                                           task, the episode's own statistics (``stats/<feature>/<stat>``), and ours:
                                           seed and success
    data/chunk-XXX/file-XXX.parquet        frames, episodes concatenated, images as PNG bytes ({bytes, path}), with
                                           the ``huggingface`` schema metadata ``datasets`` reads

Every feature is a scalar, a vector or an image, as LeRobot's tools require: the ground-truth keypoints
(``groundtruth.*``, ``[K, 3]`` and ``[K, 2]`` per frame) are stored flat, named ``<keypoint>.<axis>``, and
reshaped when loaded. LeRobot's tools may drop what is ours (the ``wam`` block of ``info.json``, the ``seed`` and
``success`` columns); the reader copes without them.

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

from wam.data.video import VideoDecodeError, VideoFileWriter, decode_video, video_info
from wam.io import atomic_write_bytes, atomic_write_json

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200  # LeRobot's default; LeRobot 0.6 refuses a dataset that declares 0, even one without video
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
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


DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_, "image": np.uint8, "video": np.uint8}
PICTURES = ("image", "video")  # PNG bytes in the data files, or frames of an mp4 file beside them
STATS = ("min", "max", "mean", "std")
"""The per-feature statistics normalization reads; every dataset must carry them in ``meta/stats.json``."""
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
"""The quantiles LeRobot writes beside them (policies that normalize by quantiles read these)."""
ALL_STATS = (*STATS, "count", *QUANTILES)
GROUND_TRUTH_PREFIX = "groundtruth."  # flat features named <row>.<axis>, reshaped to [rows, axes] on load

# The columns each metadata table must hold, with the Arrow type each must have; a reader checks them all.
TASKS_COLUMNS = {"task_index": pa.types.is_integer}  # and the task string: a column or the pandas index
EPISODES_COLUMNS = {"episode_index": pa.types.is_integer, "tasks": pa.types.is_list, "length": pa.types.is_integer,
                    "dataset_from_index": pa.types.is_integer, "dataset_to_index": pa.types.is_integer}
OUR_EPISODE_COLUMNS = {"seed": pa.types.is_integer, "success": pa.types.is_boolean}
"""Written by ``wam collect``; optional on reading, since LeRobot's tools drop them and its writer has none."""


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
    if feature["dtype"] in PICTURES and (len(shape) != 3 or shape[2] != 3):
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
             extra_info: dict[str, Any] | None = None, video: bool = False) -> dict[str, Any]:
    """Assemble staged episodes into the v3 layout, with the image features as mp4 video if ``video``;
    ``info.json`` is written last and marks completion."""
    staged = sorted((root / STAGING).glob("episode-*.parquet"))
    if not staged:
        raise DatasetError(f"{root}: nothing to finalize (no staged episodes)")
    if video:
        features = {k: {**f, "dtype": "video", "info": video_info(fps, *f["shape"][:2])} if f["dtype"] == "image"
                    else f for k, f in features.items()}
    all_features = {**features, **INDEX_FEATURES}
    videos = Videos(root, {k: f for k, f in features.items() if f["dtype"] == "video"}, fps)
    tasks: dict[str, int] = {}
    episode_rows: list[dict[str, Any]] = []
    data_tables: list[pa.Table] = []
    file_index, file_bytes, start = 0, 0, 0
    shutil.rmtree(root / "data", ignore_errors=True)
    shutil.rmtree(root / "videos", ignore_errors=True)

    def flush() -> None:
        nonlocal data_tables, file_index, file_bytes
        if data_tables:
            path = root / DATA_PATH.format(chunk_index=file_index // CHUNKS_SIZE, file_index=file_index % CHUNKS_SIZE)
            table = pa.concat_tables(data_tables)
            _atomic_write_table(path, table.replace_schema_metadata(huggingface_metadata(all_features)))
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
        episode_stats = {f"stats/{key}/{name}": value for key, feature in all_features.items()
                         for name, value in feature_stats(column_array(table.column(key), feature), feature).items()}
        located = videos.add(table)
        table = table.drop_columns(list(videos.features))
        if file_bytes and file_bytes + table.nbytes > DATA_FILE_MB * 2**20:
            flush()
        data_tables.append(table)
        file_bytes += table.nbytes
        episode_rows.append({"episode_index": episode_index, "tasks": [meta["task"]], "length": n,
                             "data/chunk_index": file_index // CHUNKS_SIZE, "data/file_index": file_index % CHUNKS_SIZE,
                             "dataset_from_index": start, "dataset_to_index": start + n, **located, **episode_stats,
                             "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                             "seed": meta["seed"],
                             # a dreamed episode has no success to record (wam.data.synthetic)
                             **({"success": meta["success"]} if "success" in meta else {})})
        start += n
    flush()
    videos.close()

    _atomic_write_table(root / EPISODES_PATH.format(chunk_index=0, file_index=0), pa.Table.from_pylist(episode_rows))
    _atomic_write_table(root / "meta/tasks.parquet", tasks_table(list(tasks)))
    atomic_write_json(root / "meta/stats.json",
                      compute_stats(root, all_features, info={"video_path": VIDEO_PATH, "fps": fps}))
    info = {
        "codebase_version": CODEBASE_VERSION, "robot_type": robot_type,
        "total_episodes": len(episode_rows), "total_frames": start, "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": int(fps) if float(fps).is_integer() else fps, "splits": {"train": f"0:{len(episode_rows)}"},
        "data_path": DATA_PATH, "video_path": VIDEO_PATH if videos.features else None, "features": all_features,
        **(extra_info or {}),
    }
    atomic_write_json(root / "meta/info.json", info)
    shutil.rmtree(root / STAGING, ignore_errors=True)
    return info


class Videos:
    """The mp4 files of the video features while ``finalize`` writes them: each episode's frames follow the last
    one's in the current file of their feature, and a file that reaches ``VIDEO_FILE_MB`` is closed for the next."""

    def __init__(self, root: Path, features: dict[str, dict[str, Any]], fps: float):
        self.root, self.features, self.fps = root, features, fps
        self.files = dict.fromkeys(features, 0)
        self.writers: dict[str, VideoFileWriter] = {}

    def add(self, table: pa.Table) -> dict[str, Any]:
        """Encode the video features of one staged episode; its ``videos/<key>/...`` episode columns."""
        located = {}
        for key, feature in self.features.items():
            writer = self.writers.get(key)
            if writer is not None and writer.path.exists() and writer.path.stat().st_size > VIDEO_FILE_MB * 2**20:
                writer.close()
                writer, self.files[key] = None, self.files[key] + 1
            if writer is None:
                path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=self.files[key] // CHUNKS_SIZE,
                                                     file_index=self.files[key] % CHUNKS_SIZE)
                writer = self.writers[key] = VideoFileWriter(path, self.fps, *feature["shape"][:2])
            start = writer.frames
            writer.add(column_array(table.column(key), {**feature, "dtype": "image"}))
            located.update({f"videos/{key}/chunk_index": self.files[key] // CHUNKS_SIZE,
                            f"videos/{key}/file_index": self.files[key] % CHUNKS_SIZE,
                            f"videos/{key}/from_timestamp": start / self.fps,
                            f"videos/{key}/to_timestamp": writer.frames / self.fps})
        return located

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet`` as LeRobot writes it: ``task_index`` per task, the task string as the pandas index
    (LeRobot reads the text of task ``i`` as ``tasks.iloc[i].name``)."""
    pandas = {"index_columns": ["task"],
              "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                                  "metadata": {"encoding": "UTF-8"}}],
              "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                           "numpy_type": "int64", "metadata": None},
                          {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                           "metadata": None}],
              "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__},
              "pandas_version": "2.3.3"}  # what LeRobot 0.6's writer records; pandas reads the index from it
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


def huggingface_metadata(features: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The ``huggingface`` schema metadata of a data file: the ``datasets`` feature types, which LeRobot's
    streaming dataset needs to decode images (without it, it yields the raw ``{bytes, path}``)."""
    def value(dtype: str) -> dict[str, str]:
        return {"dtype": dtype, "_type": "Value"}

    types = {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue  # not in the data files
        if feature["dtype"] == "image":
            types[key] = {"_type": "Image"}
        elif feature["shape"] == [1]:
            types[key] = value(feature["dtype"])
        else:
            types[key] = {"feature": value(feature["dtype"]), "length": feature["shape"][0], "_type": "List"}
    return {"huggingface": json.dumps({"info": {"features": types}})}


def feature_stats(values: np.ndarray, feature: dict[str, Any]) -> dict[str, Any]:
    """min, max, mean, std, count and the quantiles of one feature over frames ``values`` ``[N, ...]``, each of the
    feature's shape; images per channel (``[3, 1, 1]``) on the [0, 1] scale, computed exactly from their uint8
    histograms."""
    if feature["dtype"] in PICTURES:
        histograms = np.stack([np.bincount(values[..., c].ravel(), minlength=256) for c in range(values.shape[-1])])
        out = {name: v.reshape(-1, 1, 1) for name, v in _histogram_stats(histograms).items()}
    else:
        x = values.astype(np.float64).reshape(len(values), -1)
        out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0),
               **{name: np.quantile(x, q, axis=0) for name, q in QUANTILES.items()}}
        out = {name: v.reshape(feature["shape"]) for name, v in out.items()}
    return {**{name: out[name].tolist() for name in (*STATS, *QUANTILES)}, "count": [len(values)]}


def _histogram_stats(histograms: np.ndarray) -> dict[str, np.ndarray]:
    """Per row of ``histograms`` ``[C, 256]`` (counts of the uint8 values), the statistics of the values / 255;
    quantiles interpolate between order statistics as ``np.quantile`` does."""
    levels = np.arange(histograms.shape[1]) / 255.0
    n = histograms.sum(1)
    mean = histograms @ levels / n
    out = {"min": np.array([levels[np.flatnonzero(h)[0]] for h in histograms]),
           "max": np.array([levels[np.flatnonzero(h)[-1]] for h in histograms]),
           "mean": mean, "std": np.sqrt((histograms * (levels[None] - mean[:, None]) ** 2).sum(1) / n)}
    cumulative = histograms.cumsum(1)
    for name, q in QUANTILES.items():
        position = q * (n - 1)
        low, high = np.floor(position), np.ceil(position)
        order = [levels[[np.searchsorted(c, k, side="right") for k in (lo, hi)]]
                 for c, lo, hi in zip(cumulative, low, high)]
        out[name] = np.array([a + (p - lo) * (b - a) for (a, b), p, lo in zip(order, position, low)])
    return out


def compute_stats(root: Path, features: dict[str, dict[str, Any]],
                  info: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per-feature statistics over every frame (``feature_stats``) as stored, before any reshaping; ``info`` as
    for ``LeRobotDataset.read_frames``."""
    data = LeRobotDataset.read_frames(root, features, reshape=False, info=info)
    return {key: feature_stats(array, features[key]) for key, array in data.items()}


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
    def has_actions(self) -> bool:
        """Whether the episodes carry action labels; without an ``action`` feature a dataset is action-free video
        (``wam collect --no-actions``, or a LeRobot dataset recorded without actions)."""
        return "action" in self.features

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """For every frame, the first frame of its episode and the frame after its episode's last (exclusive): the
        bounds windows, chunks and frame pairs clamp to."""
        start = np.zeros(self.num_frames, dtype=np.int64)
        end = np.zeros(self.num_frames, dtype=np.int64)
        for e in self.episodes:
            lo, hi = e["dataset_from_index"], e["dataset_to_index"]
            start[lo:hi], end[lo:hi] = lo, hi
        return start, end

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
    def read_frames(root: Path, features: dict[str, dict[str, Any]], reshape: bool = True,
                    info: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Read every data file into one numpy array per feature (images decoded to uint8 ``[N, H, W, 3]``; flat
        ground truth reshaped to ``[N, rows, axes]`` unless ``reshape`` is false). Video features need the
        ``video_path`` and ``fps`` of ``info`` (default: ``meta/info.json``)."""
        files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
        if not files:
            raise DatasetError(f"{root}/data holds no parquet files; collect the dataset again with `wam collect`")
        tables = [read_table(f) for f in files]
        videos = {k: f for k, f in features.items() if f["dtype"] == "video"}
        if videos:
            info = info or _read_json(root / "meta/info.json")
        out: dict[str, np.ndarray] = read_videos(root, videos, tables, info) if videos else {}
        for key, feature in features.items():
            missing = [str(f) for f, t in zip(files, tables) if key not in t.column_names and key not in videos]
            if missing:
                raise DatasetError(f"feature {key!r} declared in meta/info.json is missing from {missing[0]}; "
                                   "the dataset is corrupt, collect it again")
            try:
                if key not in videos:
                    out[key] = column_array(pa.chunked_array([c for t in tables for c in t.column(key).chunks]),
                                            feature)
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
            if reshape:
                out[key] = out[key].reshape(len(out[key]), *logical_shape(key, feature))
        return out


def read_videos(root: Path, features: dict[str, dict[str, Any]], tables: list[pa.Table],
                info: dict[str, Any]) -> dict[str, np.ndarray]:
    """The frames of the video features ``[N, H, W, 3]`` in data-file order: each frame is the one of its episode's
    mp4 file (``info["video_path"]``) at the episode's ``from_timestamp`` plus the frame's ``timestamp``, to within
    half a frame period."""
    template, fps = info.get("video_path"), info.get("fps")
    if not isinstance(template, str) or not isinstance(fps, (int, float)) or fps <= 0:
        raise DatasetError(f"{root}/meta/info.json declares video features but no 'video_path' template or positive "
                           "'fps'; the dataset is corrupt")
    episodes = {e["episode_index"]: e for e in read_episodes(root)}
    try:
        episode_index = np.concatenate([t.column("episode_index").to_numpy() for t in tables])
        timestamp = np.concatenate([t.column("timestamp").to_numpy() for t in tables]).astype(np.float64)
    except (KeyError, pa.ArrowException) as e:
        raise DatasetError(f"{root}/data lacks the episode_index or timestamp column ({e}); the dataset is "
                           "corrupt") from None
    out = {}
    for key, feature in features.items():
        frames = np.zeros((len(episode_index), *feature["shape"]), np.uint8)
        decoded: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        columns = [f"videos/{key}/{name}" for name in ("chunk_index", "file_index", "from_timestamp")]
        for episode in np.unique(episode_index):
            row = episodes.get(int(episode), {})
            if any(c not in row for c in columns):
                raise DatasetError(f"{root}/meta/episodes: episode {episode} lacks {columns} for the video feature "
                                   f"{key!r}; the dataset is corrupt")
            chunk, file, start = (row[c] for c in columns)
            path = root / template.format(video_key=key, chunk_index=chunk, file_index=file)
            if (chunk, file) not in decoded:
                try:
                    decoded[chunk, file] = decode_video(path)
                except VideoDecodeError as e:
                    raise DatasetError(f"{e}; the dataset is corrupt, collect it again") from None
            video, times = decoded[chunk, file]
            rows = np.flatnonzero(episode_index == episode)
            wanted = start + timestamp[rows]
            nearest = np.clip(np.searchsorted(times, wanted), 1, len(times) - 1)
            nearest = np.where(np.abs(times[nearest - 1] - wanted) <= np.abs(times[nearest] - wanted), nearest - 1,
                               nearest)
            off = np.abs(times[nearest] - wanted).max()
            if off > 0.5 / fps or video.shape[1:] != tuple(feature["shape"]):
                raise DatasetError(f"{path}: episode {episode} of {key!r} needs frames {wanted[0]:.3f}-{wanted[-1]:.3f} s "
                                   f"of shape {feature['shape']}; the file has {len(times)} frames of shape "
                                   f"{list(video.shape[1:])}, the nearest {off:.3f} s away; the dataset is corrupt")
            frames[rows] = video[nearest]
        out[key] = frames
    return out


def column_array(column: pa.ChunkedArray | pa.Array, feature: dict[str, Any]) -> np.ndarray:
    """A data column as the feature's numpy array ``[N, *shape]`` (``[N]`` for scalars; images decoded; a video
    feature's column exists only while staged, as PNG)."""
    if feature["dtype"] in PICTURES:
        return np.stack([decode_png(v["bytes"]) for v in column.to_pylist()])
    array = np.asarray(column.to_pylist() if feature["shape"] != [1] else column.to_numpy())
    return array.astype(DTYPES[feature["dtype"]])


def logical_shape(key: str, feature: dict[str, Any]) -> tuple[int, ...]:
    """The per-frame shape a feature is used with: a flat ground-truth vector named ``<row>.<axis>`` (rows outer)
    is ``(rows, axes)``; everything else keeps its stored shape."""
    shape, names = feature["shape"], feature.get("names")
    if shape == [1]:
        return ()
    if not key.startswith(GROUND_TRUTH_PREFIX) or len(shape) != 1 or not isinstance(names, list):
        return tuple(shape)
    if not all(isinstance(n, str) and n.count(".") == 1 for n in names):
        return tuple(shape)
    rows = list(dict.fromkeys(n.split(".")[0] for n in names))
    axes = list(dict.fromkeys(n.split(".")[1] for n in names))
    if names != [f"{r}.{a}" for r in rows for a in axes]:
        return tuple(shape)
    return len(rows), len(axes)


def dataset_suite(info: dict[str, Any], path: Path) -> str:
    """The registered suite of the dataset whose ``meta/info.json`` is at ``path``: the one ``wam.suite`` names
    (``DatasetError`` for one this installation lacks; a ``wam`` block without it is from before suites, so
    MetaWorld), else, for a dataset another tool wrote or rewrote without our block, the one suite whose
    observations (keys, shapes; images of any size) and action match the dataset's."""
    from wam.envs import DEFAULT_SUITE, SUITES, get_suite

    wam = info.get("wam")
    if isinstance(wam, dict):
        name = wam.get("suite", DEFAULT_SUITE)
        if not isinstance(name, str) or name not in SUITES:
            raise DatasetError(f"{path}: wam.suite {name!r} is not a registered suite ({', '.join(SUITES)})")
        return name
    features = info.get("features") if isinstance(info.get("features"), dict) else {}

    def shapes(declared: dict[str, Any]) -> dict[str, Any]:
        return {k: ("image", f["shape"][2:]) if f.get("dtype") in PICTURES else (f.get("dtype"), f["shape"])
                for k, f in declared.items() if isinstance(f, dict) and isinstance(f.get("shape"), list)
                and (k.startswith("observation.") or k == "action")}

    have = shapes(features)
    action = "action" in have  # action-free video is matched by its observations alone

    def declared(name: str, track: str) -> dict[str, Any]:
        suite = get_suite(name)
        return {**suite.observation_features(track, 1), **({"action": suite.action_feature()} if action else {})}

    matches = [name for name in SUITES if any(have == shapes(declared(name, track)) for track in ("vision", "state"))]
    if len(matches) != 1:
        raise DatasetError(f"{path} names no suite (no 'wam' block) and its observations match "
                           f"{'none' if not matches else ' and '.join(matches)} of the registered suites "
                           f"({', '.join(SUITES)}); add \"wam\": {{\"suite\": NAME}} to it")
    return matches[0]


def read_episodes(root: str | Path) -> list[dict[str, Any]]:
    """The episode table (one dict per episode, without the per-episode statistics) without loading any frame;
    ``seed`` and ``success`` are there when the dataset still has them."""
    files = sorted((Path(root) / "meta/episodes").glob("chunk-*/file-*.parquet"))
    rows = []  # LeRobot's writer starts a new file for the episodes it appends
    for path in files or [Path(root) / EPISODES_PATH.format(chunk_index=0, file_index=0)]:
        table = read_table(path, EPISODES_COLUMNS)
        ours = {k: v for k, v in OUR_EPISODE_COLUMNS.items() if k in table.column_names}
        check_columns(path, table, ours)
        keep = [c for c in table.column_names
                if c in EPISODES_COLUMNS or c in ours or c.startswith(("data/", "videos/"))]
        rows += _table_rows(path, table.select(keep))
    return rows


def read_tasks(root: str | Path) -> list[str]:
    """The task strings of ``meta/tasks.parquet``, position = task index. The text is the ``task`` column (as
    LeRobot 0.6 writes it) or the pandas index column (LeRobot 0.4 writes ``__index_level_0__``)."""
    path = Path(root) / "meta/tasks.parquet"
    table = read_table(path, TASKS_COLUMNS)
    text = "task" if "task" in table.column_names else None
    try:
        pandas = json.loads((table.schema.metadata or {}).get(b"pandas", b"{}"))
        index = [c for c in pandas.get("index_columns", []) if isinstance(c, str) and c in table.column_names]
    except (ValueError, AttributeError, TypeError):
        index = []
    text = text or (index[0] if index else None)
    if text is None:
        raise DatasetError(f"{path} holds no task text (neither a 'task' column nor a pandas index); the file is "
                           "corrupt, collect the dataset again")
    rows = sorted((r["task_index"], r[text]) for r in _read_rows(path, {**TASKS_COLUMNS, text: pa.types.is_string}))
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
    check_columns(path, table, columns or {})
    return table


def check_columns(path: Path, table: pa.Table, columns: dict[str, Any]) -> None:
    """Each of ``columns`` (name -> Arrow type test) is in ``table``, of its type and without nulls."""
    for name, is_type in columns.items():
        if name not in table.column_names:
            raise DatasetError(f"{path} lacks the column {name!r}; the file is corrupt, collect the dataset again")
        column = table.column(name)
        if not is_type(column.type) or column.null_count:
            raise DatasetError(f"{path}: column {name!r} holds {column.type} with {column.null_count} nulls, not "
                               "the type it is written with; the file is corrupt, collect the dataset again")


def _read_rows(path: Path, columns: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a metadata table (see ``read_table``) as dicts."""
    return _table_rows(path, read_table(path, columns))


def _table_rows(path: Path, table: pa.Table) -> list[dict[str, Any]]:
    """``table`` (read from ``path``) as dicts; undecodable values raise ``DatasetError``."""
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
        shape = (feature["shape"][-1], 1, 1) if feature["dtype"] in PICTURES else tuple(feature["shape"])
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
