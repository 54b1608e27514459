"""KV-cache observation replacement against recomputing the context, per single-step control tick.

For autoregressive models whose context is a 16-step window of observations (``--n-obs 16``), one real MetaWorld
episode is driven by the cached policy while two more policies see the same observations: the same streaming
policy with the cache off (every tick re-encodes the 16 frames and feeds them through the trunk; it generates the
same single action), and the ordinary chunked K=1 path (re-encodes the context and generates the whole chunk).
It prints the median latency per tick of each, the ratio, the largest action difference, and the cache's
high-water mark, for several context sizes (tokens per frame, width), all measured in the same run; and writes
``results/deployment/kv_cache.json``. Latency and equality do not depend on the weights, so the models are
initialized, not trained (pass ``--run`` to time a trained model instead).

    usage: python benchmarks/kv_cache.py --data DATASET [--run RUN] [--ticks 120] [--out results/deployment]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from wam.data.lerobot import LeRobotDataset
from wam.deployment import ChunkedPolicy, StreamingPolicy
from wam.envs import get_suite
from wam.eval.budget import machine_info
from wam.io import atomic_write_json
from wam.model import WorldActionModel
from wam.train.loop import build_model

METAWORLD = get_suite("metaworld")

TASK = "drawer-open-v3"
# (image tokens per frame, width, layers, image encoder channels). Our default size (one token per image); 16 tokens
# per step as GR-1 spends on its perceiver-resampled patches; a 4x heavier image encoder (GR-1 encodes every frame
# with a ViT, ours is a 0.4 ms CNN); and 64 tokens per frame (an 8x8 grid, three conv stages), the frame size of
# token-based video world models, where a 16-step context is over a thousand tokens.
SIZES = [(1, 128, 4, (16, 32, 64, 128)), (16, 128, 4, (16, 32, 64, 128)), (16, 256, 6, (16, 32, 64, 128)),
         (16, 128, 4, (32, 64, 128, 256)), (64, 128, 4, (32, 64, 128)), (64, 256, 6, (32, 64, 128))]


def measure(model: WorldActionModel, ticks: int, warmup: int = 20) -> dict:
    cached, recomputed = StreamingPolicy(model, kv_cache=True), StreamingPolicy(model, kv_cache=False)
    ordinary = ChunkedPolicy(model, 1)
    env = METAWORLD.make_env(TASK, track="vision", image_size=model.config.observation_shapes[
        "observation.images.corner2"][0], max_episode_steps=ticks + warmup)
    obs, _ = env.reset(seed=1_000_000_001)
    worst = 0.0
    for _ in range(warmup + ticks):
        obs["task"] = METAWORLD.instruction(TASK)
        a, b, c = (p.select_action(obs) for p in (cached, recomputed, ordinary))
        worst = max(worst, float(np.abs(a - b).max()), float(np.abs(a - c).max()))
        obs, *_ = env.step(a)
    env.close()
    ms = {name: 1e3 * float(np.median(p.call_latencies[warmup:]))
          for name, p in (("cached", cached), ("recomputed", recomputed), ("ordinary_chunk", ordinary))}
    c = model.config
    return {"n_obs": c.n_obs, "tokens_per_frame": model.encoder.tokens_per_frame, "image_tokens": c.image_tokens,
            "d_model": c.d_model, "n_layers": c.n_layers, "image_channels": list(c.image_channels),
            "parameters": model.num_parameters(), "ticks": ticks, "latency_per_tick_ms": ms,
            "speedup_vs_recomputed": ms["recomputed"] / ms["cached"],
            "speedup_vs_ordinary_chunk": ms["ordinary_chunk"] / ms["cached"],
            "max_action_difference": worst, "cache_tokens_max": cached.cache_tokens_max,
            "cache_mb": cached._cache.nbytes() / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a vision-track dataset (shapes and statistics)")
    parser.add_argument("--run", type=Path, help="time this trained autoregressive run instead of fresh models")
    parser.add_argument("--ticks", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path("results/deployment"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per policy call, as the evaluations run
    if args.run:
        models = [WorldActionModel.load(args.run / "model")]
    else:
        ds = LeRobotDataset.load(args.data)
        models = []
        for image_tokens, width, layers, channels in SIZES:
            torch.manual_seed(0)
            models.append(build_model("fast-wam", ds, {"backbone": "autoregressive", "coupling": "joint"}, n_obs=16,
                                      image_tokens=image_tokens, d_model=width, n_layers=layers,
                                      image_channels=channels).eval())
    start = time.perf_counter()
    rows = [measure(m, args.ticks) for m in models]
    print(f"{'tokens/frame':>12} {'width':>6} {'layers':>6} {'CNN':>4} | {'cached':>8} {'recompute':>9} {'ratio':>6} | "
          f"{'chunk K=1':>9} {'ratio':>6} | {'max |da|':>8} {'cache':>8}")
    for r in rows:
        ms = r["latency_per_tick_ms"]
        print(f"{r['tokens_per_frame']:>12} {r['d_model']:>6} {r['n_layers']:>6} {r['image_channels'][-1]:>4} | "
              f"{ms['cached']:>6.2f}ms "
              f"{ms['recomputed']:>7.2f}ms {r['speedup_vs_recomputed']:>5.1f}x | {ms['ordinary_chunk']:>7.2f}ms "
              f"{r['speedup_vs_ordinary_chunk']:>5.1f}x | {r['max_action_difference']:>8.1e} "
              f"{r['cache_mb']:>6.2f}MB")
    result = {"task": TASK, "context_steps": 16, "rows": rows, "time_s": time.perf_counter() - start,
              "machine": machine_info("cpu"), "command": "python benchmarks/kv_cache.py " + " ".join(
                  f"--{k} {v}" for k, v in vars(args).items() if v is not None)}
    atomic_write_json(args.out / "kv_cache.json", result)
    print(f"wrote {args.out / 'kv_cache.json'}")


if __name__ == "__main__":
    main()
