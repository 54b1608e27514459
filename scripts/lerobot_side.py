"""LeRobot's side of ``scripts/check_lerobot.sh``: run with the Python of a virtualenv that has LeRobot (and no
wam). It checks, with LeRobot's own code, a dataset that ``wam collect`` wrote, and writes copies of its episodes
with LeRobot's own writer (images, and mp4 video) for wam to read back.

    python scripts/lerobot_side.py --ours DATASET --work DIR

Prints one line per check (``ok`` or ``FAIL`` with the error) and exits 1 if any check failed. Nothing is
written outside ``DIR``; ``DATASET`` is copied before anything touches it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets import dataset_tools
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.streaming_dataset import StreamingLeRobotDataset

INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
REPO = "local/wam"
failures: list[str] = []


def check(name: str):
    """Run the decorated check now and record its outcome."""
    def run(fn):
        try:
            detail = fn()
            print(f"ok    {name}" + (f": {detail}" if detail else ""), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure of LeRobot's code is the finding
            failures.append(name)
            where = traceback.extract_tb(e.__traceback__)[-1]
            print(f"FAIL  {name}: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]} "
                  f"[{where.filename.split('site-packages/')[-1]}:{where.lineno}]", flush=True)
        return fn
    return run


def load(root: Path) -> LeRobotDataset:
    return LeRobotDataset(REPO, root=root)


def append_episode(root: Path, frames: list[dict]) -> None:
    """Append one episode with LeRobot's writer (0.6: ``resume``; 0.4: the loaded dataset writes on)."""
    dataset = LeRobotDataset.resume(REPO, root=root) if hasattr(LeRobotDataset, "resume") else load(root)
    for frame in frames:
        dataset.add_frame(frame)
    dataset.save_episode()
    dataset.finalize()


def writer_frame(item: dict, features: dict) -> dict:
    """A dataset item as LeRobot's ``add_frame`` takes it: user features (images HWC uint8) and the task."""
    frame = {}
    for key, feature in features.items():
        value = item[key]
        if feature["dtype"] in ("image", "video"):
            value = (value.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        else:
            value = value.numpy().reshape(feature["shape"]).astype(feature["dtype"])
        frame[key] = value
    frame["task"] = item["task"]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, required=True, help="a dataset written by `wam collect`")
    parser.add_argument("--work", type=Path, required=True, help="scratch directory (emptied)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    ours = args.work / "ours"
    shutil.copytree(args.ours, ours)
    info = json.loads((ours / "meta/info.json").read_text())
    features = {k: f for k, f in info["features"].items() if k not in INDEX_KEYS}
    image_keys = [k for k, f in features.items() if f["dtype"] in ("image", "video")]
    print(f"LeRobot {version('lerobot')}, torch {torch.__version__}, Python {sys.version.split()[0]}; "
          f"dataset {args.ours} ({info['total_episodes']} episodes, {info['total_frames']} frames)", flush=True)

    @check("LeRobotDataset loads it; item['task'] is the task text")
    def _():
        dataset = load(ours)
        assert len(dataset) == info["total_frames"] and dataset.num_episodes == info["total_episodes"]
        item = dataset[0]
        assert isinstance(item["task"], str) and item["task"], f"task is {item['task']!r}"
        return f"{len(dataset)} frames, task {item['task']!r}, fps {dataset.fps!r}"

    # A chunk of the actions, or for action-free video (`wam collect --no-actions`) of the future frames.
    chunked = "action" if "action" in features else image_keys[0]

    @check(f"delta_timestamps gives {chunked} chunks; a DataLoader batches them")
    def _():
        fps = info["fps"]
        dataset = LeRobotDataset(REPO, root=ours, delta_timestamps={chunked: [t / fps for t in range(16)]})
        chunk = dataset[3][chunked]
        assert tuple(chunk.shape[:1]) == (16,), tuple(chunk.shape)
        assert torch.allclose(chunk[0], load(ours)[3][chunked]), "the chunk starts at the frame"
        batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True)))
        shapes = {k: tuple(v.shape) for k, v in batch.items() if hasattr(v, "shape") and k in features}
        return f"chunk {tuple(chunk.shape)}, batch {shapes}"

    @check("StreamingLeRobotDataset decodes the images (as for LeRobot's own datasets) to the stored pixels")
    def _():
        item = next(iter(StreamingLeRobotDataset(REPO, root=ours)))
        stored = load(ours)[int(item["index"])]  # streaming shuffles
        for key in image_keys:  # a PIL image in LeRobot 0.4, a tensor in 0.6; never the raw {bytes, path}
            pixels = torch.as_tensor(np.asarray(item[key])) if not isinstance(item[key], torch.Tensor) else item[key]
            if pixels.dtype == torch.uint8:
                pixels = pixels.permute(2, 0, 1).float() / 255
            assert torch.allclose(pixels, stored[key]), f"{key} ({type(item[key]).__name__}) differs"
        return ", ".join(f"{k} {type(item[k]).__name__}" for k in image_keys) + f", task {item['task']!r}"

    @check("dataset_tools.delete_episodes")
    def _():
        out = dataset_tools.delete_episodes(load(ours), episode_indices=[0], output_dir=args.work / "deleted",
                                            repo_id=REPO)
        again = load(args.work / "deleted")
        assert again.num_episodes == info["total_episodes"] - 1 and isinstance(again[0]["task"], str)
        return f"{out.num_episodes} episodes left"

    @check("dataset_tools.split_dataset and merge_datasets")
    def _():
        n = info["total_episodes"]
        parts = dataset_tools.split_dataset(load(ours), splits={"train": list(range(n // 2)),
                                                                "val": list(range(n // 2, n))},
                                            output_dir=args.work / "split")
        merged = dataset_tools.merge_datasets([load(args.work / "split/train"), load(args.work / "split/val")],
                                              output_repo_id=REPO, output_dir=args.work / "merged")
        again = load(args.work / "merged")
        assert again.num_episodes == n and len(again) == info["total_frames"]
        return f"split {[p.num_episodes for p in parts.values()]}, merged {merged.num_episodes}"

    @check("dataset_tools.remove_feature (a ground-truth feature)")
    def _():
        key = next(k for k in features if k.startswith("groundtruth."))
        dataset_tools.remove_feature(load(ours), feature_names=key, output_dir=args.work / "removed", repo_id=REPO)
        assert key not in load(args.work / "removed")[0]
        return f"removed {key}"

    @check("append an episode with LeRobot's writer, reload")
    def _():
        root = args.work / "appended"
        shutil.copytree(ours, root)
        source = load(ours)
        first = source.meta.episodes[0]
        frames = [writer_frame(source[i], features) for i in range(first["dataset_from_index"],
                                                                    first["dataset_to_index"])]
        append_episode(root, frames)
        again = load(root)
        assert again.num_episodes == info["total_episodes"] + 1, again.num_episodes
        return f"{again.num_episodes} episodes"

    for name, videos in (("lerobot-image", False), ("lerobot-video", True)):
        @check(f"write the episodes again with LeRobot's writer ({'mp4 video' if videos else 'images'}) -> {name}")
        def _():
            source = load(ours)
            declared = {k: {"dtype": ("video" if videos else "image") if k in image_keys else f["dtype"],
                            "shape": tuple(f["shape"]), "names": f["names"]} for k, f in features.items()}
            dataset = LeRobotDataset.create(REPO, fps=info["fps"], features=declared, root=args.work / name,
                                            robot_type=info.get("robot_type"), use_videos=videos)
            for episode in source.meta.episodes:
                for i in range(episode["dataset_from_index"], episode["dataset_to_index"]):
                    dataset.add_frame(writer_frame(source[i], features))
                dataset.save_episode()
            dataset.finalize()
            again = load(args.work / name)
            assert len(again) == info["total_frames"]
            return f"{again.num_episodes} episodes"

    print(f"{len(failures)} failed" + (f": {', '.join(failures)}" if failures else ""), flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
