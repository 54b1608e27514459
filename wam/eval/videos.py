"""Rollout videos of evaluation episodes: mp4 files enlarged for watching."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def video_bytes(frames: list[np.ndarray], control_hz: float) -> bytes:
    """``frames`` as an mp4 file's bytes (workers on other machines send them back rather than write them)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "episode.mp4", frames, control_hz).read_bytes()


def write_video(path: Path, frames: list[np.ndarray], control_hz: float, scale: int = 4) -> Path:
    """``frames`` enlarged ``scale`` times (64 px is too small to watch), played at half the control rate (at
    least 5 frames per second)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    big = [np.repeat(np.repeat(f, scale, axis=0), scale, axis=1) for f in frames]
    imageio.mimwrite(path, big, fps=max(5, int(control_hz // 2)), macro_block_size=1)
    return path
