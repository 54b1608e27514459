"""Shared fixtures: one small real MetaWorld dataset per test session, collected with the real pipeline.

The suite is deterministic: every test starts from the same seeds of Python's, NumPy's and torch's global
generators, and Hypothesis draws the same cases on every run (``derandomize``). The wider random search of the
hostile-input properties is marked ``wide`` and runs only when asked: ``python -m pytest -m wide``.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # scripts/test.sh runs one worker per core: each keeps to one thread (the `wam` commands it starts inherit that),
    # since two workers each spinning two threads on two cores slow every training step several-fold.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
settings.register_profile("seeded", derandomize=True, database=None, print_blob=True)
settings.load_profile("seeded")


@pytest.fixture(autouse=True)
def seeded_generators():
    """The global generators a test may draw from, seeded alike before every test whatever ran before it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    """Skip the wide random search unless the marker expression names it (``-m wide``)."""
    if "wide" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="wide random search: run it with `python -m pytest -m wide`")
    for item in items:
        if "wide" in item.keywords:
            item.add_marker(skip)

TASKS = "button-press-topdown-v3,drawer-open-v3"


@pytest.fixture(scope="session")
def vision_data(tmp_path_factory) -> Path:
    """Two tasks x two expert episodes, vision track."""
    from wam.data.collect import CollectConfig, run_collect

    out = tmp_path_factory.mktemp("data") / "vision"
    run_collect(CollectConfig(tasks=TASKS, episodes=2, out=out, workers=2))
    return out


@pytest.fixture(scope="session")
def state_data(tmp_path_factory) -> Path:
    """One task x two expert episodes, privileged-state track."""
    from wam.data.collect import CollectConfig, run_collect

    out = tmp_path_factory.mktemp("data") / "state"
    run_collect(CollectConfig(tasks="drawer-open-v3", episodes=2, out=out, track="state", workers=1))
    return out


@pytest.fixture(scope="session")
def pusht_data(tmp_path_factory) -> Path:
    """Three PushT expert episodes, vision track, collected through the command line."""
    out = tmp_path_factory.mktemp("pusht") / "data"
    result = wam_cli("collect", "--suite", "pusht", "--tasks", "pusht", "--episodes", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def wam_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``wam`` command line in a subprocess."""
    return subprocess.run([sys.executable, "-m", "wam.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def wam_refused(*args: str) -> subprocess.CompletedProcess:
    """Run a ``wam`` command expected to refuse its input through the console script's own ``main``, in this
    process: what it prints and returns are the command's, without the few seconds a fresh interpreter takes to
    import torch. Commands that do their work run in a subprocess (``wam_cli``)."""
    from wam.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # tyro's own usage errors
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def headless_chromium(*flags: str):
    """Debian's Chromium through its chromedriver, headless, keeping the browser's console log for the test."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The process failed with exit 2 and one clear error line that contains every fragment, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in lines if line.startswith("wam: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def train_on_windows(model, windows, steps: int, batch_size: int, lr: float = 1e-3) -> None:
    """``steps`` Adam steps on random batches of ``windows`` (seeded), checking that every loss is finite."""
    import numpy as np
    import torch

    rng = np.random.default_rng(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        loss, info = model.loss(windows.sample(batch_size, rng), step)
        assert torch.isfinite(loss), info
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step()


def small_trained_model(ds, preset: str, steps: int):
    """A small ``preset`` (width 32, one layer, two sampler steps) with its substrates fitted and ``steps`` seeded
    training steps on ``ds``, in eval mode."""
    import torch

    from wam.train.loop import build_model

    torch.manual_seed(0)
    model = build_model(preset, ds, d_model=32, n_layers=1, n_heads=2, inference_steps=2,
                        image_channels=(8, 8, 8, 8), substrate_fit_steps=2)
    for substrate in model.substrates.values():
        substrate.fit(ds, 2)
    model.add_caches(ds)
    train_on_windows(model, model.windows(ds), steps=steps, batch_size=8)
    return model.eval()


def train_on_fixed_batch(model, batch: dict, steps: int, lr: float = 2e-3) -> tuple[float, float, dict[str, float]]:
    """Loss before and after ``steps`` Adam steps on one batch (each measured with the same noise, levels and
    dropout draws, so they compare), and the loss parts of the last step."""
    import torch

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()

    def loss_at_fixed_noise() -> float:
        torch.manual_seed(123)
        return model.loss(batch)[0].item()

    before = loss_at_fixed_noise()
    for step in range(steps):
        torch.manual_seed(step)
        loss, info = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step()
    return before, loss_at_fixed_noise(), info
