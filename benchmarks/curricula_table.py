"""The data-curricula table: every finished cell of ``benchmarks/curricula.sh`` with its success, a 95 % Wilson
interval over its episodes, its per-task success and what it trained on; per experiment what video adds.

    python benchmarks/curricula_table.py CELLS RESULTS     (CELLS: OUT/cells; writes RESULTS/summary.json, table.md)

A cell is ``CELLS/<experiment>/<preset>/<variant>`` holding ``run/`` (``wam train``) and ``eval/eval_info.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from scipy.stats import binomtest

from wam.io import atomic_write_bytes, atomic_write_json


def cell_row(cell: Path, cells: Path) -> dict[str, Any]:
    info = json.loads((cell / "eval/eval_info.json").read_text())
    run = json.loads((cell / "run/train_config.json").read_text())
    summary = json.loads((cell / "run/train_summary.json").read_text())
    episodes = info["per_episode"]
    wins = sum(e["success"] for e in episodes)
    interval = binomtest(wins, len(episodes)).proportion_ci(method="wilson")
    experiment, preset, variant = cell.relative_to(cells).parts
    sources = run.get("sources", [])
    dreamed = sum(s["episodes"] for s in sources if s.get("kind") == "synthetic")
    curriculum = run.get("curriculum", "cotrain")
    if curriculum == "cotrain" and not any(s.get("kind", "video") == "video" for s in sources[1:]):
        curriculum = "none"  # co-training without video is plain training
    return {"experiment": experiment, "preset": preset, "variant": variant, "success": wins / len(episodes),
            "ci95": [float(interval.low), float(interval.high)], "episodes": len(episodes),
            "per_task": {t["task"]: t["metrics"]["pc_success"] / 100 for t in info["per_task"]},
            "failures": info["failures"]["overall"], "curriculum": curriculum,
            "labelled_episodes": run["trained_on_episodes"] - dreamed,
            "video_episodes": sum(s["episodes"] for s in sources if not s["labelled"]),
            "dreamed_episodes": dreamed, "synthetic_share": run.get("synthetic_share") if dreamed else None,
            "video": [Path(s["data"]).name for s in sources if not s["labelled"]], "steps": summary["steps"],
            "train_time_s": summary["train_time_s"], "latent_actions": summary.get("latent_actions")}


def percent(x: float) -> str:
    return f"{100 * x:.1f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Data curricula (benchmarks/curricula.sh)", "",
             "Success over every evaluation episode of a cell, with its 95 % Wilson interval; `video` names the "
             "action-free sources, `curriculum` how they entered training (docs/curricula.md).", ""]
    for experiment in dict.fromkeys(r["experiment"] for r in rows):
        lines += [f"## {experiment}", "", "| preset | variant | curriculum | labelled episodes | video episodes | "
                  "dreamed episodes | success % | 95 % interval | failures |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["experiment"] == experiment):
            failed = ", ".join(f"{k} {v}" for k, v in r["failures"].items() if v)
            lines.append(f"| {r['preset']} | {r['variant']} | {r['curriculum']} | {r['labelled_episodes']} | "
                         f"{r['video_episodes']} | {r.get('dreamed_episodes', 0)} | {percent(r['success'])} | "
                         f"{percent(r['ci95'][0])}-"
                         f"{percent(r['ci95'][1])} | {failed} |")
        lines.append("")
    return "\n".join(lines)


def main(cells: Path, results: Path) -> None:
    rows = [cell_row(c, cells) for c in sorted(cells.glob("*/*/*")) if (c / "eval/eval_info.json").exists()]
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "summary.json", {"cells": rows})
    atomic_write_bytes(results / "table.md", markdown(rows).encode())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
