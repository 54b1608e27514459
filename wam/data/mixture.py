"""Training data from several sources: labelled demonstrations plus action-free video, as one dataset in memory.

``combine(labelled, videos)`` concatenates the frames of every source into one ``LeRobotDataset`` whose episodes
say where they come from (``source``: 0 for the labelled dataset, ``i`` for the ``i``-th video dataset) and
whether their windows may train the action (``actions``). A video dataset may be action-free (``wam collect
--no-actions``) or a labelled one used as video: its actions are then ignored. Task indices are remapped onto the
union of the tasks, so a model trained on the mixture knows the instructions of video-only tasks too.

Normalization statistics stay the labelled dataset's: the model acts in the labelled data's world (its action
ranges, its proprioception), whatever the video shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wam.data.lerobot import INDEX_FEATURES, DatasetError, LeRobotDataset


def combine(labelled: LeRobotDataset, videos: Sequence[LeRobotDataset]) -> LeRobotDataset:
    """One dataset holding ``labelled`` (episodes with ``actions=True``) followed by every video dataset (episodes
    with ``actions=False``); ``DatasetError`` when a video comes from another suite or lacks a feature of the
    labelled data (observations of another shape, missing ground truth)."""
    if not labelled.has_actions:
        raise DatasetError(f"{labelled.root} holds no action labels (a video-only dataset); pass it with --video and "
                           "give labelled demonstrations with --data")
    keys = [k for k in labelled.frames if k != "action" and k not in INDEX_FEATURES]
    for video in videos:
        if video.suite != labelled.suite:
            raise DatasetError(f"video {video.root} comes from the {video.suite} suite, the labelled data "
                               f"{labelled.root} from {labelled.suite}; video must show the same robot")
        for key in keys:
            if key not in video.frames:
                raise DatasetError(f"video {video.root} lacks the feature {key!r} that {labelled.root} has; collect "
                                   "the video with the same suite and --track")
            if video.frames[key].shape[1:] != labelled.frames[key].shape[1:]:
                raise DatasetError(f"video {video.root} stores {key!r} as {list(video.frames[key].shape[1:])}, "
                                   f"{labelled.root} as {list(labelled.frames[key].shape[1:])}; collect the video "
                                   "with the same --track and --image-size")
    sources = [labelled, *videos]
    tasks = list(dict.fromkeys(t for d in sources for t in d.tasks))
    frames: dict[str, list[np.ndarray]] = {k: [] for k in [*keys, "action", "task_index", "episode_index"]}
    episodes, start = [], 0
    for i, source in enumerate(sources):
        remap = np.array([tasks.index(t) for t in source.tasks], dtype=np.int64)
        for key in keys:
            frames[key].append(source.frames[key])
        n = source.num_frames
        frames["action"].append(source.frames["action"] if i == 0 else
                                np.zeros((n, *labelled.frames["action"].shape[1:]), np.float32))
        frames["task_index"].append(remap[source.frames["task_index"]])
        for episode in source.episodes:
            index = len(episodes)
            lo, hi = episode["dataset_from_index"] + start, episode["dataset_to_index"] + start
            episodes.append({**episode, "episode_index": index, "dataset_from_index": lo, "dataset_to_index": hi,
                             "source": i, "actions": i == 0})
            frames["episode_index"].append(np.full(hi - lo, index, np.int64))
        start += n
    combined = {k: np.concatenate(v) for k, v in frames.items()}
    combined["index"] = np.arange(start, dtype=np.int64)
    for key in ("frame_index", "timestamp"):
        combined[key] = np.concatenate([s.frames[key] for s in sources])
    info = {**labelled.info, "total_frames": start, "total_episodes": len(episodes), "total_tasks": len(tasks)}
    return LeRobotDataset(labelled.root, info, labelled.stats, combined, episodes, tasks)
