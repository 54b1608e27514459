"""Training data from several sources: labelled demonstrations plus action-free video and dreamed (synthetic)
episodes, as one dataset in memory.

``combine(labelled, videos, synthetic)`` concatenates the frames of every source into one ``LeRobotDataset`` whose
episodes say where they come from (``source``: 0 for the labelled dataset, then the video datasets, then the
synthetic ones, in order), whether their windows may train the action (``actions``) and whether they were dreamed
(``synthetic``). A video dataset may be action-free (``wam collect --no-actions``) or a labelled one used as video:
its actions are then ignored. A synthetic dataset (``wam synthesize``) brings actions but no reward, success or
ground truth: those features are zero in its frames and listed, with the progress toward success they imply, in
``info["wam"]["synthetic_lacks"]``, so that
windows which would read them refuse (``WindowDataset``). Task indices are remapped onto the union of the tasks,
so a model trained on the mixture knows the instructions of video-only tasks too.

Normalization statistics stay the labelled dataset's: the model acts in the labelled data's world (its action
ranges, its proprioception), whatever the video shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wam.data.lerobot import INDEX_FEATURES, DatasetError, LeRobotDataset


def combine(labelled: LeRobotDataset, videos: Sequence[LeRobotDataset] = (),
            synthetic: Sequence[LeRobotDataset] = ()) -> LeRobotDataset:
    """One dataset holding ``labelled`` (episodes with ``actions=True``), then every video dataset (``actions=False``),
    then every synthetic one (``actions=True, synthetic=True``); ``DatasetError`` when a source comes from another
    suite or lacks a feature of the labelled data (observations of another shape; video without ground truth)."""
    if not labelled.has_actions:
        raise DatasetError(f"{labelled.root} holds no action labels (a video-only dataset); pass it with --video and "
                           "give labelled demonstrations with --data")
    keys = [k for k in labelled.frames if k != "action" and k not in INDEX_FEATURES]
    for video in videos:
        check_source(labelled, video, "video", keys)
    # A dream has only observations and actions; with no success to reach, no progress toward it either.
    lacks = [k for k in keys if not k.startswith("observation.")] + ["progress"]
    for source in synthetic:
        if not source.info.get("wam", {}).get("synthetic"):
            raise DatasetError(f"{source.root} is not a synthetic dataset (`wam synthesize` writes those); pass "
                               "demonstrations with --data and video with --video")
        check_source(labelled, source, "synthetic data", [k for k in keys if k not in lacks])
    sources = [labelled, *videos, *synthetic]
    tasks = list(dict.fromkeys(t for d in sources for t in d.tasks))
    frames: dict[str, list[np.ndarray]] = {k: [] for k in [*keys, "action", "task_index", "episode_index"]}
    episodes, start = [], 0
    for i, source in enumerate(sources):
        remap = np.array([tasks.index(t) for t in source.tasks], dtype=np.int64)
        n = source.num_frames
        for key in keys:
            frames[key].append(np.zeros((n, *labelled.frames[key].shape[1:]), labelled.frames[key].dtype)
                               if key not in source.frames else source.frames[key])
        dreamed = i > len(videos)
        frames["action"].append(source.frames["action"] if i == 0 or dreamed else
                                np.zeros((n, *labelled.frames["action"].shape[1:]), np.float32))
        frames["task_index"].append(remap[source.frames["task_index"]])
        for episode in source.episodes:
            index = len(episodes)
            lo, hi = episode["dataset_from_index"] + start, episode["dataset_to_index"] + start
            episodes.append({**episode, "episode_index": index, "dataset_from_index": lo, "dataset_to_index": hi,
                             "source": i, "actions": i == 0 or dreamed, "synthetic": dreamed})
            frames["episode_index"].append(np.full(hi - lo, index, np.int64))
        start += n
    combined = {k: np.concatenate(v) for k, v in frames.items()}
    combined["index"] = np.arange(start, dtype=np.int64)
    for key in ("frame_index", "timestamp"):
        combined[key] = np.concatenate([s.frames[key] for s in sources])
    info = {**labelled.info, "total_frames": start, "total_episodes": len(episodes), "total_tasks": len(tasks)}
    if synthetic:
        info["wam"] = {**info.get("wam", {}), "synthetic_lacks": lacks}
    return LeRobotDataset(labelled.root, info, labelled.stats, combined, episodes, tasks)


def check_source(labelled: LeRobotDataset, source: LeRobotDataset, what: str, keys: Sequence[str]) -> None:
    """``DatasetError`` unless ``source`` shows the labelled data's suite with its features ``keys`` alike."""
    if source.suite != labelled.suite:
        raise DatasetError(f"{what} {source.root} comes from the {source.suite} suite, the labelled data "
                           f"{labelled.root} from {labelled.suite}; it must show the same robot")
    for key in keys:
        if key not in source.frames:
            raise DatasetError(f"{what} {source.root} lacks the feature {key!r} that {labelled.root} has; make it "
                               "with the same suite and --track")
        if source.frames[key].shape[1:] != labelled.frames[key].shape[1:]:
            raise DatasetError(f"{what} {source.root} stores {key!r} as {list(source.frames[key].shape[1:])}, "
                               f"{labelled.root} as {list(labelled.frames[key].shape[1:])}; make it with the same "
                               "--track and --image-size")
