"""``wam eval --sweep``: the fidelity-latency curve, one closed-loop evaluation per operating point.

Every model exposes dials that trade generated future for time: sampler steps, how much of the future stream is
generated (``future``: skip, truncate or predict; ``future-horizon``: how many future offsets), whether it is
decoded to pixels, the chunk length K, adaptive chunking and the KV cache. A sweep names some of them with their
values, e.g. ``--sweep inference-steps=2,5,10 n-action-steps=4,8``, and evaluates every combination (the grid) on
the same seeds. Each point lands in ``<out>/points/<name>/eval_info.json`` (a finished point is not redone, so a
sweep can be resumed); ``<out>/sweep.json`` holds success, latency per call and per action, calls per episode and
the feasibility at the control rate per point, and ``<out>/sweep.png`` plots success against latency per action.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wam.eval.config import EvalConfig, point_configs
from wam.eval.runner import run_closed_loop
from wam.io import atomic_write_json


def run_sweep(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate ``cfg`` closed-loop at every point of ``cfg.sweep``; writes and returns ``sweep.json``."""
    out = Path(cfg.out)
    rows = []
    for point, name, point_cfg in point_configs(cfg):
        done = point_cfg.out / "eval_info.json"
        info = json.loads(done.read_text()) if done.exists() else run_closed_loop(point_cfg)
        budget = info["budget"]
        rows.append({"point": point, "name": name, "pc_success": info["aggregated"]["pc_success"],
                     "latency_per_call_ms_p50": budget["latency_per_call_ms"]["p50"],
                     "latency_per_action_ms": budget["latency_per_action_ms"],
                     "calls_per_episode": budget.get("cost_model", {}).get("calls_per_episode_mean"),
                     "feasible_at_control_hz": budget["feasible_at_control_hz"],
                     "deployment": info["model"]["deployment"], "eval_info": str(done)})
    sweep = {"grid": list(cfg.sweep), "points": rows, "plot": str(plot_sweep(rows, out / "sweep.png", cfg.run))}
    atomic_write_json(out / "sweep.json", sweep)
    return sweep


def plot_sweep(rows: list[dict[str, Any]], path: Path, title: str | Path = "") -> Path:
    """Success against latency per executed action, one marker per operating point (named in the legend)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(8.0, 4.2), dpi=120)
    markers = "osD^v<>ph*"
    for i, r in enumerate(rows):
        ax.plot(r["latency_per_action_ms"], r["pc_success"], markers[i % len(markers)], markersize=8, alpha=0.8,
                label=r["name"].replace("_", ", "))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.set_xlabel("latency per executed action (ms, log scale)")
    ax.set_ylabel("success (%)")
    ax.set_ylim(-5, 105)
    ax.set_title(f"fidelity-latency: {title}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
