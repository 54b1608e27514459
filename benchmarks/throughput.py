"""Training and closed-loop evaluation speed, against what the hardware can do and against an older commit.

For each preset, size and precision it measures, in one run:

- **training samples/s** of the real ``wam train`` loop, read from its log between the warm-up step and the last
  (run in a subprocess, so an older checkout given with ``--baseline DIR`` is measured the same way, one after the
  other in the same run: ``train_speedup`` is ours / the baseline's, the baseline always in float32);
- the **split of one step** between gathering the batch, forward, backward and the optimizer (EMA included),
  timed step by step with the device synchronised between the parts (so the parts add up to a little more than
  the unsynchronised step);
- the **FLOPs of one step** (forward and backward) counted with ``torch.utils.flop_counter.FlopCounterMode``, and
  the achieved FLOP/s as a fraction of the **matrix-product peak** measured in the same run at that precision;
- with ``--eval-tasks``: closed-loop **episodes/s and model calls/s** of ``wam eval`` on the trained model, ours
  and the baseline's (``eval_speedup``);
- with ``--latency-presets``: **act latency per call** of every named preset (batch 1, weights as initialised:
  the arithmetic does not depend on them).

Sizes: ``default`` (the presets' own, width 128 x 4 layers) and ``large`` (width 512 x 8 layers, 8 heads), where
arithmetic rather than per-operation overhead should dominate.

    usage: python benchmarks/throughput.py --data DATASET --out results/throughput/NAME.json
           [--presets fast-wam flare] [--precisions fp32 bf16] [--sizes default large] [--steps 60] [--warmup 10]
           [--baseline OLD_CHECKOUT] [--eval-tasks T1,T2 --episodes N [--eval-run RUN] [--max-steps S]]
           [--latency-presets all|P1 P2 ..]
           [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from wam.data.lerobot import LeRobotDataset
from wam.eval.budget import machine_info
from wam.io import atomic_write_json
from wam.presets.models import PRESETS
from wam.train.loop import Optimization, TrainConfig, batch_rng, build_model, seed_torch

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"default": {}, "large": {"d_model": 512, "n_layers": 8, "n_heads": 8}}
FIT_STEPS = 20  # substrate autoencoders: fitted briefly, outside the timed steps
TRAIN_IN_SUBPROCESS = """
import json, sys
from wam.train.loop import TrainConfig, train
args = json.loads(sys.argv[1])
train(TrainConfig(**args["config"]), **args["overrides"])
"""


def commit_of(checkout: Path) -> str | None:
    """The short commit of a git checkout, ``+changes`` when tracked files differ from it, or None (not a git
    checkout, or no git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True,
                                text=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                                 capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
    return (commit + ("+changes" if changed else "")) or None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of a square matrix product, the largest this device does well (2048 on a CPU, 8192 on a GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def train_rate(code: Path, data: Path, preset: str, precision: str, overrides: dict, steps: int, warmup: int,
               device: str, out: Path) -> float:
    """Samples/s of ``wam train`` as the code under ``code`` runs it, between step ``warmup`` and the last."""
    config = {"data": str(data), "out": str(out), "preset": preset, "steps": steps, "log_every": warmup,
              "warmup_steps": 0, "substrate_fit_steps": FIT_STEPS, "device": device}
    if precision != "fp32":
        config["precision"] = precision  # an older checkout knows only float32, and is only asked for that
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}
    arguments = json.dumps({"config": config, "overrides": overrides})
    result = subprocess.run([sys.executable, "-c", TRAIN_IN_SUBPROCESS, arguments], env=env, cwd=out.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"training under {code} failed:\n{result.stderr[-3000:]}")
    log = {r["step"]: r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())}
    first, last = log[warmup], log[steps]
    batch = TrainConfig(data=data, out=out).batch_size
    return (last["step"] - first["step"]) * batch / (last["time_s"] - first["time_s"])


def step_split(data: Path, preset: str, precision: str, overrides: dict, steps: int, device: torch.device) -> dict:
    """Milliseconds per part of one training step (medians), the step's FLOPs, and the parameter count."""
    dataset = LeRobotDataset.load(data)
    cfg = TrainConfig(data=data, out=Path("unused"), preset=preset, warmup_steps=0)
    model = build_model(preset, dataset, substrate_fit_steps=FIT_STEPS, **overrides)
    for substrate in model.substrates.values():
        substrate.fit(dataset, FIT_STEPS, 0)
    model = model.to(device)
    model.add_caches(dataset)
    windows = model.windows(dataset)
    optimization = Optimization.create(cfg, model)
    model.train()
    autocast = {"device_type": device.type, "dtype": torch.bfloat16, "enabled": precision == "bf16"}

    def one_step(step: int, times: dict[str, list[float]] | None) -> None:
        marks = [time.perf_counter()]

        def mark():
            synchronize(device)
            marks.append(time.perf_counter())

        batch = windows.sample(cfg.batch_size, batch_rng(0, 0, step))
        seed_torch(0, 0, step)
        mark()
        with torch.autocast(**autocast):
            loss, _ = model(batch, step)
        mark()
        optimization.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(optimization.trainable, 1.0)
        optimization.optimizer.step()
        optimization.schedule.step()
        optimization.ema.step(optimization.trainable)
        model.after_step()
        mark()
        if times is not None:
            for part, a, b in zip(("data", "forward", "backward", "optimizer"), marks, marks[1:]):
                times[part].append(1e3 * (b - a))

    for step in range(1, 4):
        one_step(step, None)
    times: dict[str, list[float]] = {p: [] for p in ("data", "forward", "backward", "optimizer")}
    for step in range(4, 4 + steps):
        one_step(step, times)
    batch = windows.sample(cfg.batch_size, batch_rng(0, 0, 0))
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(**autocast):
            loss, _ = model(batch, 0)
        loss.backward()
    split = {p: statistics.median(t) for p, t in times.items()}
    return {"step_ms": split, "flops_per_step": counter.get_total_flops(), "parameters": model.num_parameters()}


def eval_rate(code: Path, run: Path, tasks: str, episodes: int, max_steps: int | None, device: str, out: Path) -> dict:
    """Closed-loop episodes/s and model calls/s of ``wam eval`` as the code under ``code`` runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))}
    cap = [] if max_steps is None else ["--max-steps", str(max_steps)]
    subprocess.run([sys.executable, "-m", "wam.cli", "eval", "--run", str(run), "--tasks", tasks, "--episodes",
                    str(episodes), "--out", str(out), "--device", device, *cap], check=True, env=env, cwd=out.parent,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    info = json.loads((out / "eval_info.json").read_text())
    seconds = info["aggregated"]["eval_s"]
    n = len(info["per_episode"])
    return {"episodes": n, "eval_s": seconds, "episodes_per_s": n / seconds,
            "model_calls_per_s": info["budget"]["model_calls"] / seconds,
            "episodes_per_call": info["budget"].get("episodes_per_call", 1.0),
            "pc_success": info["aggregated"]["pc_success"],
            "outcomes": [(e["task"], e["seed"], e["success"], e["steps"]) for e in info["per_episode"]]}


def same_outcomes(ours: list, base: list) -> dict:
    """Whether every episode (task, seed) succeeded alike, and how many ended at another step: batched matrix
    products round differently in the last bits, which can move a long episode's success by a step."""
    return {"same_success": [o[:3] for o in ours] == [o[:3] for o in base],
            "episodes_ending_at_another_step": sum(o[3] != b[3] for o, b in zip(ours, base))}


def act_latency(data: Path, preset: str, precisions: list[str], device: torch.device, calls: int = 20) -> list[dict]:
    """Median milliseconds of one ``act`` call (batch 1) of ``preset`` at its default size, per precision."""
    dataset = LeRobotDataset.load(data)
    model = build_model(preset, dataset, substrate_fit_steps=2)
    for substrate in model.substrates.values():
        substrate.fit(dataset, 2, 0)
    model = model.to(device)
    model.add_caches(dataset)
    batch = model.windows(dataset).batch(np.array([0]))
    model.eval()
    generator = torch.Generator(device=device).manual_seed(0)
    rows = []
    for precision in precisions:
        times = []
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for i in range(calls + 3):
                model.reset()
                synchronize(device)
                start = time.perf_counter()
                model.act(batch, generator=generator)
                synchronize(device)
                if i >= 3:
                    times.append(1e3 * (time.perf_counter() - start))
        rows.append({"preset": preset, "precision": precision, "latency_ms_p50": statistics.median(times),
                     "latency_ms_min": min(times), "parameters": model.num_parameters()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--presets", nargs="*", default=["fast-wam", "flare"],
                        help="presets whose training speed is measured (none: only the evaluation and latency)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--sizes", nargs="+", default=["default", "large"], choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=60, help="training steps per measurement (after --warmup)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--split-steps", type=int, default=10, help="synchronised steps timed for the split")
    parser.add_argument("--baseline", type=Path, help="a checkout of an older commit, measured alike")
    parser.add_argument("--eval-tasks", default="", help="closed-loop tasks for the evaluation speed ('' skips it)")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--eval-run", type=Path, help="a trained run to evaluate (default: the first preset's "
                        "briefly trained run, whose episodes all fail at the same step: a policy that succeeds ends "
                        "episodes at different steps, which is what batched evaluation must cope with)")
    parser.add_argument("--max-steps", type=int, help="episode cap of the evaluation (default: the suite's)")
    parser.add_argument("--latency-presets", nargs="*", default=[], help="presets to time per call ('all': every one)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.eval_run and not (args.eval_run / "train_config.json").is_file():
        parser.error(f"--eval-run {args.eval_run}: no train_config.json there; give a run directory of `wam train`")
    device = torch.device(args.device)
    data = args.data.resolve()
    results: dict = {"machine": machine_info(device), "device": args.device, "data": args.data.name,
                     "steps": args.steps, "warmup": args.warmup, "batch_size": TrainConfig(data=data, out=Path()).batch_size,
                     "commit": commit_of(ROOT),
                     "baseline_commit": commit_of(args.baseline) if args.baseline else None, "peak_flops": {},
                     "training": [], "train_speedup": {},
                     "evaluation": None, "eval_speedup": None, "latency": []}
    for precision in args.precisions:
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        results["peak_flops"][precision] = matmul_peak(device, dtype)
        print(f"matmul peak {precision}: {results['peak_flops'][precision] / 1e9:.0f} GFLOP/s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="wam-throughput-"))
    runs: dict[str, Path] = {}
    for preset in args.presets:
        for size in args.sizes:
            overrides = SIZES[size]
            baseline = None
            if args.baseline:
                out = work / f"base-{preset}-{size}"
                baseline = train_rate(args.baseline.resolve(), data, preset, "fp32", overrides, args.steps + args.warmup,
                                      args.warmup, args.device, out)
            for precision in args.precisions:
                out = work / f"ours-{preset}-{size}-{precision}"
                rate = train_rate(ROOT, data, preset, precision, overrides, args.steps + args.warmup, args.warmup,
                                  args.device, out)
                if size == "default" and precision == "fp32":
                    runs[preset] = out
                split = step_split(data, preset, precision, overrides, args.split_steps, device)
                achieved = split["flops_per_step"] * rate / results["batch_size"]
                row = {"preset": preset, "size": size, **overrides, "precision": precision, "samples_per_s": rate,
                       "baseline_fp32_samples_per_s": baseline, "speedup": rate / baseline if baseline else None,
                       **split, "achieved_flops": achieved,
                       "fraction_of_peak": achieved / results["peak_flops"][precision]}
                results["training"].append(row)
                atomic_write_json(args.out, results)
                print(f"train {preset:10s} {size:7s} {precision}: {rate:8.1f} samples/s"
                      + (f" ({row['speedup']:.2f}x baseline)" if baseline else "")
                      + f", {achieved / 1e9:.1f} GFLOP/s = {100 * row['fraction_of_peak']:.0f} % of peak, step ms "
                      + " ".join(f"{k} {v:.1f}" for k, v in split["step_ms"].items()), flush=True)
        rows = [r for r in results["training"] if r["preset"] == preset and r["size"] == "default" and r["speedup"]]
        if rows:
            results["train_speedup"][preset] = max(r["speedup"] for r in rows)
    if args.eval_tasks and (runs or args.eval_run):
        preset, run = (json.loads((args.eval_run / "train_config.json").read_text())["preset"],
                        args.eval_run.resolve()) \
            if args.eval_run else next(iter(runs.items()))
        evaluate = (args.eval_tasks, args.episodes, args.max_steps, args.device)
        ours = eval_rate(ROOT, run, *evaluate, work / "eval-ours")
        base = eval_rate(args.baseline.resolve(), run, *evaluate, work / "eval-base") if args.baseline else None
        results["evaluation"] = {"preset": preset, "tasks": args.eval_tasks, "ours": ours, "baseline": base}
        if base:
            results["eval_speedup"] = ours["episodes_per_s"] / base["episodes_per_s"]
            results["evaluation"].update(same_outcomes(ours["outcomes"], base["outcomes"]))
        print(f"eval {preset}: {ours['episodes_per_s']:.2f} episodes/s, {ours['model_calls_per_s']:.1f} calls/s"
              + (f" ({results['eval_speedup']:.2f}x baseline)" if base else ""), flush=True)
    latency_presets = list(PRESETS) if args.latency_presets == ["all"] else args.latency_presets
    for preset in latency_presets:
        for row in act_latency(data, preset, args.precisions, device):
            results["latency"].append(row)
            print(f"act {preset:16s} {row['precision']}: {row['latency_ms_p50']:.2f} ms per call", flush=True)
        atomic_write_json(args.out, results)
    atomic_write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
