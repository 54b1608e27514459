"""Print the anatomy benchmark as a Markdown table: closed-loop success next to budget and offline screens.

Joint and post-head rows also show the same weights acting after imagining the future (``--future predict``);
rollout rows the same weights acting with their prior policy alone (one candidate, no search).

    usage: python benchmarks/anatomy_table.py [RESULTS_DIR]     (default: results/anatomy)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    ev = json.loads((run / "eval_info.json").read_text())
    train = json.loads((run / "train_summary.json").read_text())
    offline = run / "offline_info.json"
    screens = json.loads(offline.read_text())["offline"] if offline.exists() else {}
    spec = ev["model"]["spec"]
    future = {k.split("/")[1]: v for k, v in screens.items() if k.startswith("future.")}
    error = future.get("mse", future.get("token_error"))
    kind = "token error" if "token_error" in future else "mse"
    psnr = f"{future['psnr']:.1f} ({future['ceiling_psnr']:.1f})" if "ceiling_psnr" in future else (
        f"{future['psnr']:.1f}" if "psnr" in future else "–")
    n = len(ev["per_episode"])
    predict = "–"  # the same weights evaluated the other way: imagining the future first, or without the planner
    for label, name in (("future predicted", "eval_info_future_predict.json"), ("prior only", "eval_info_prior_only.json")):
        if (run / name).exists():
            alt = json.loads((run / name).read_text())
            predict = (f"{label}: {alt['aggregated']['pc_success']:.0f} %, "
                       f"{alt['budget']['latency_per_call_ms']['p50']:.1f} ms")
    return (f"| {run.name} | {spec['substrate']} | {spec['backbone']} | {spec['coupling']} | "
            f"{ev['aggregated']['pc_success']:.0f} % ({n}) | {ev['budget']['latency_per_call_ms']['p50']:.1f} ms | "
            f"{predict} | "
            f"{train['train_time_s']:.0f} s (+{train.get('substrate_prepare_time_s', 0):.0f} s) | "
            f"{train['parameters'] / 1e6:.2f} M | {screens.get('action_mse_executed', float('nan')):.3f} | "
            + ("–" if error is None else f"{error:.3f} {kind}") + f" | {psnr} |")


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/anatomy")
    runs = sorted(p for p in root.iterdir() if (p / "eval_info.json").exists())
    print("| run | substrate | backbone | coupling | success (episodes) | latency / call p50 | same weights, other "
          "way: success, latency | training (+ substrate fit) | parameters | action mse (executed) | future error | "
          "PSNR dB (ceiling) |")
    print("|---" * 12 + "|")
    for run in runs:
        print(row(run))


if __name__ == "__main__":
    main()
