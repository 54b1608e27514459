"""``wam quickstart``: the main job. Collect demonstrations, train ``fast-wam``, evaluate it closed-loop, and
print the accuracy-at-budget table; every stage writes its outputs under ``--out`` and a re-run reuses them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from annotated_types import Ge

from wam.data.collect import CollectConfig, run_collect
from wam.envs import DEFAULT_SUITE, check_suite_name
from wam.eval import run_eval
from wam.eval.config import EvalConfig
from wam.eval.report import print_report
from wam.io import atomic_write_json, config_dict
from wam.options import CheckedOptions
from wam.train.loop import TrainConfig, train


@dataclass
class QuickstartConfig(CheckedOptions):
    """The main job: collect, train and evaluate fast-wam on easy vision-track MetaWorld tasks."""

    out: Path = Path("outputs/quickstart")
    """Where the dataset, the run and the evaluation go."""
    suite: str = DEFAULT_SUITE
    """Simulator suite (metaworld, metaworld-lerobot, metaworld-wrist, pusht; see docs/suites.md)."""
    tasks: str = "quickstart"
    """Comma-separated tasks or groups of --suite; default: the suite's quickstart group (MetaWorld:
    button-press-topdown-v3, drawer-open-v3, drawer-close-v3)."""
    preset: str = "fast-wam"
    demos: Annotated[int, Ge(1)] = 30
    """Demonstrations per task."""
    steps: Annotated[int, Ge(1)] = 2500
    """Training steps."""
    batch_size: Annotated[int, Ge(1)] = 64
    eval_episodes: Annotated[int, Ge(1)] = 20
    """Evaluation episodes per task (20: a task's success is then known to about +-10 points)."""
    max_steps: Annotated[int | None, Ge(1)] = None
    """Evaluation episode cap in control steps; default: the suite's (MetaWorld 500, as published results use)."""
    video: Annotated[int, Ge(0)] = 1
    """Rollout videos per task."""
    workers: Annotated[int, Ge(1)] = 2
    device: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_suite_name(self.suite)


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    """Run the three stages, skipping those whose outputs already exist; returns the evaluation info."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "quickstart_config.json", config_dict(cfg))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    run_collect(CollectConfig(tasks=cfg.tasks, suite=cfg.suite, episodes=cfg.demos, out=out / "data",
                              workers=cfg.workers))
    timings["collect_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_dir = out / "run"
    summary_path = run_dir / "train_summary.json"
    train_cfg = TrainConfig(preset=cfg.preset, data=out / "data", out=run_dir, steps=cfg.steps,
                            batch_size=cfg.batch_size, device=cfg.device)  # type: ignore[arg-type]
    if summary_path.exists() and json.loads(summary_path.read_text()).get("steps") == cfg.steps:
        print(f"{run_dir}: already trained, reusing it")
    else:
        train(train_cfg)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    info = run_eval(EvalConfig(run=run_dir, tasks=cfg.tasks, episodes=cfg.eval_episodes, out=out / "eval",
                               video=cfg.video, max_steps=cfg.max_steps, device=cfg.device))  # type: ignore[arg-type]
    timings["eval_s"] = time.perf_counter() - t0
    print_report(info, title=f"wam quickstart ({cfg.preset})")
    total = sum(timings.values())
    print("stage times: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in timings.items()) + f", total {total:.0f} s")
    print(f"outputs in {out}: data/ (LeRobot v3 dataset), run/model/ (weights), eval/eval_info.json, eval/videos/")
    return info
