"""Faults injected into real runs: SIGKILL during training and evaluation, a read-only output directory, a full
disk (a file-size limit). Each time, nothing already written is lost or corrupted, and a re-run finishes the job
exactly as an undisturbed run does."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import assert_one_line_error, wam_cli, wam_refused

pytestmark = pytest.mark.reliability
TRAIN = ("train", "--preset", "vla", "--steps", "120", "--batch-size", "4", "--log-every", "1", "--save-every", "10",
         "--threads", "1")


def kill_when(args: list, ready, timeout: float = 300) -> None:
    """Start ``wam *args``, SIGKILL it as soon as ``ready()`` holds, and check that it had not finished."""
    proc = subprocess.Popen([sys.executable, "-m", "wam.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def reference_run(vision_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    result = wam_cli(*TRAIN, "--data", vision_data, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def board(run, tag: str | None = None):
    """The run's TensorBoard events read back by TensorBoard's own reader: the tags, or ``tag``'s (step, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    if tag is None:
        return events.Tags()["scalars"]
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


def test_training_killed_then_resumed_matches_an_uninterrupted_run(vision_data, reference_run, tmp_path):
    out = tmp_path / "killed"
    kill_when([*TRAIN, "--data", vision_data, "--out", out], lambda: (out / "checkpoints/step-000030").exists())
    assert not (out / "model").exists()
    result = wam_cli(*TRAIN, "--data", vision_data, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert losses(out) == losses(reference_run)
    assert board(out, "train/loss") == board(reference_run, "train/loss"), "TensorBoard sees each step once"
    assert {"train/lr", "train/grad_norm", "train/samples_per_s", "loss/action"} <= set(board(out))
    a, b = (load_file(str(run / "model/model.safetensors")) for run in (reference_run, out))
    assert all(a[k].equal(b[k]) for k in a)


def test_evaluation_killed_leaves_nothing_partial_and_reruns_the_same(reference_run, tmp_path):
    args = ["eval", "--run", reference_run, "--tasks", "button-press-topdown-v3", "--episodes", "3", "--max-steps",
            "40", "--video", "1"]
    done = wam_cli(*args, "--out", tmp_path / "whole")
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "killed"
    kill_when([*args, "--out", out], out.exists)  # created just before the first episode; results come at the end
    assert not (out / "eval_info.json").exists()
    again = wam_cli(*args, "--out", out)
    assert again.returncode == 0, again.stderr[-2000:]
    first, second = (json.loads((d / "eval_info.json").read_text()) for d in (tmp_path / "whole", out))
    outcome = lambda info: [(e["seed"], e["success"], e["steps"], e["sum_reward"]) for e in info["per_episode"]]  # noqa: E731
    assert outcome(first) == outcome(second)


def test_unwritable_output_directory(vision_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = wam_cli(*TRAIN, "--data", vision_data, "--out", blocker / "run")  # any user, root included
    assert_one_line_error(result, "cannot write", str(blocker))
    if os.geteuid() != 0:  # root writes into read-only directories
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert_one_line_error(wam_refused(*TRAIN, "--data", vision_data, "--out", locked / "run"), "cannot write")
        finally:
            locked.chmod(0o700)


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_during_training_keeps_the_last_checkpoint(vision_data, reference_run, tmp_path):
    out = tmp_path / "full"
    limit = (reference_run / "model/model.safetensors").stat().st_size // 2  # checkpoints no longer fit
    result = subprocess.run([sys.executable, "-m", "wam.cli", *TRAIN, "--data", str(vision_data), "--out", str(out)],
                            capture_output=True, text=True, preexec_fn=_limit_file_size(limit), timeout=600)
    assert_one_line_error(result, "cannot write", "File too large")
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") and p.is_file()]
    assert leftovers == []  # no torn temporary files
    resumed = wam_cli(*TRAIN, "--data", vision_data, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(out) == losses(reference_run)


def test_full_disk_during_collection_loses_no_finished_episode(vision_data, tmp_path):
    from tests.conftest import TASKS
    from wam.data.lerobot import LeRobotDataset

    out = tmp_path / "full"
    args = ["collect", "--tasks", TASKS, "--episodes", "2", "--out", str(out), "--workers", "1"]
    limit = 600_000  # a staged episode (~370 kB) fits, the assembled data file (~1.5 MB) does not
    result = subprocess.run([sys.executable, "-m", "wam.cli", *args], capture_output=True, text=True,
                            preexec_fn=_limit_file_size(limit), timeout=600)
    assert_one_line_error(result, "cannot write", "File too large")
    assert not (out / "meta/info.json").exists()  # not mistaken for a finished dataset
    assert len(list((out / "staging").glob("episode-*.parquet"))) == 4  # every recorded episode was kept
    assert [p for p in out.rglob(".*") if p.is_file()] == []
    resumed = wam_cli(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = LeRobotDataset.load(vision_data), LeRobotDataset.load(out)
    assert a.episodes == b.episodes and all((a.frames[k] == b.frames[k]).all() for k in a.frames)


def test_evaluation_into_an_unwritable_directory(reference_run, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = wam_cli("eval", "--run", reference_run, "--tasks", "button-press-topdown-v3", "--episodes", "1",
                     "--max-steps", "10", "--out", blocker / "eval")
    assert_one_line_error(result, "cannot write", str(blocker))
