"""Print the deployment benchmark (benchmarks/deployment.sh, benchmarks/kv_cache.py) as Markdown tables.

    usage: python benchmarks/deployment_table.py [RESULTS_DIR]     (default: results/deployment)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wam.eval.runner import task_success


def adaptive(results: Path) -> None:
    rows = [("K=1 (every step)", "k1"), ("fixed K=4", "k4"), ("fixed K=8", "k8"),
            ("adaptive, K<=16 (p75)", "adaptive"), ("adaptive, K<=8 (p50)", "adaptive-k8"),
            ("adaptive, K<=8 (p25)", "adaptive-k8-p25")]
    for model in sorted(p for p in (results / "adaptive").glob("*") if p.is_dir()):
        infos = {key: json.loads((model / f"{key}.json").read_text()) for _, key in rows
                 if (model / f"{key}.json").exists()}
        if not infos:
            continue
        tasks = list(task_success(next(iter(infos.values()))))
        print(f"\n{model.name}:\n")
        print("| deployment | " + " | ".join(f"{t}: success, calls/episode" for t in tasks)
              + " | latency/call p50 | model time/episode |")
        print("|---|" + "---|" * len(tasks) + "---|---|")
        for label, key in rows:
            if key not in infos:
                continue
            info = infos[key]
            cells = []
            for t in tasks:
                episodes = [e for e in info["per_episode"] if e["task"] == t]
                calls = sum(e["model_calls"] for e in episodes) / len(episodes)
                cells.append(f"{task_success(info)[t]:.0f} % ({len(episodes)}), {calls:.1f}")
            budget = info["budget"]
            print(f"| {label} | " + " | ".join(cells) + f" | {budget['latency_per_call_ms']['p50']:.1f} ms | "
                  f"{budget['cost_model']['model_time_per_episode_s']:.2f} s |")
        for key in ("adaptive", "adaptive-k8", "adaptive-k8-p25"):
            if key in infos:
                d = infos[key]["model"]["deployment"]
                quantiles = {k: round(v, 3) for k, v in d["surprise_quantiles"].items()}
                print(f"\n{key}: checks at steps {d['checks']}, threshold {d['surprise_threshold']:.4g}, "
                      f"{d['early_replans']} early replans; "
                      f"surprise quantiles during evaluation {quantiles}")


def sweeps(results: Path) -> None:
    for sweep_file in sorted(results.glob("sweep-*/**/sweep.json")):
        sweep = json.loads(sweep_file.read_text())
        print(f"\n{sweep_file.parent.relative_to(results)}: --sweep {' '.join(sweep['grid'])}\n")
        print("| operating point | success | latency/call p50 | latency/action | calls/episode | feasible at 80 Hz |")
        print("|---|---|---|---|---|---|")
        for p in sweep["points"]:
            print(f"| {p['name']} | {p['pc_success']:.0f} % | {p['latency_per_call_ms_p50']:.1f} ms | "
                  f"{p['latency_per_action_ms']:.2f} ms | {p['calls_per_episode']:.1f} | "
                  f"{'yes' if p['feasible_at_control_hz'] else 'no'} |")


def kv_cache(results: Path) -> None:
    path = results / "kv_cache.json"
    if not path.exists():
        return
    kv = json.loads(path.read_text())
    print(f"\nKV-cache observation replacement, {kv['context_steps']}-step context, {kv['machine']['cpu']}:\n")
    print("| tokens/frame | width x layers | image encoder channels | cached | recomputed | ratio | "
          "chunk K=1 (whole chunk) | ratio | max action difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in kv["rows"]:
        ms = r["latency_per_tick_ms"]
        print(f"| {r['tokens_per_frame']} | {r['d_model']} x {r['n_layers']} | "
              f"{'-'.join(map(str, r['image_channels']))} | {ms['cached']:.2f} ms | "
              f"{ms['recomputed']:.2f} ms | {r['speedup_vs_recomputed']:.1f}x | {ms['ordinary_chunk']:.2f} ms | "
              f"{r['speedup_vs_ordinary_chunk']:.1f}x | {r['max_action_difference']:.1e} |")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/deployment")
    adaptive(root)
    sweeps(root)
    kv_cache(root)
