"""mp4 video features as LeRobot stores them, through PyAV: AV1 (``libsvtav1``), ``yuv420p``, a keyframe every 2
frames, CRF 30, with LeRobot's defaults; the episodes of a dataset follow one another in one file, each found by
its ``from_timestamp``. Decoding reads any codec FFmpeg knows, so datasets encoded otherwise read too.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

CODEC, PIXEL_FORMAT, OPTIONS = "libsvtav1", "yuv420p", {"g": "2", "crf": "30"}
os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder reports its configuration on stderr otherwise


class VideoDecodeError(ValueError):
    """An mp4 file that is missing, damaged or holds no video stream."""


class VideoFileWriter:
    """Appends frames (``[N, H, W, 3]`` uint8, one episode at a time) to one mp4 file at ``fps``."""

    def __init__(self, path: Path, fps: float, height: int, width: int):
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames = path, 0
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream(CODEC, rate=Fraction(fps).limit_denominator(1000), options=OPTIONS)
        self._stream.pix_fmt, self._stream.height, self._stream.width = PIXEL_FORMAT, height, width

    def add(self, frames: np.ndarray) -> None:
        import av

        for frame in frames:
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        self.frames += len(frames)

    def close(self) -> None:
        self._container.mux(self._stream.encode())  # flush the encoder
        self._container.close()


def video_info(fps: float, height: int, width: int) -> dict[str, Any]:
    """The ``info`` block of a video feature in ``meta/info.json``, as LeRobot writes it."""
    return {"video.height": height, "video.width": width, "video.codec": "av1", "video.pix_fmt": PIXEL_FORMAT,
            "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}


def decode_video(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of the first video stream of ``path`` as RGB ``[N, H, W, 3]`` uint8, and its time in seconds."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            frames, times = [], []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.pts * stream.time_base))
    except (av.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"{path} cannot be decoded ({str(e).splitlines()[0][:160]})") from None
    if not frames:
        raise VideoDecodeError(f"{path} holds no frame")
    order = np.argsort(times, kind="stable")
    return np.stack(frames)[order], np.asarray(times)[order]
