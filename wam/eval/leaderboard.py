"""The leaderboard's rows and what is computed over them: a preset's row from its evaluations and timing (one
training run, or several seeds of a protocol group), and the questions a board answers across rows (screen-to-success
correlations, the Pareto front of success against latency, the central claim, the generalization summary).
Pure functions of evaluation results; ``wam.eval.bench`` runs what they read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wam.envs.variation import MIDDLE
from wam.presets.models import PRESETS
from wam.presets.recipes import parse_entry


def summed_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Failure counts added up tag by tag, keeping the tags that occurred, in the order they first appear."""
    total: dict[str, int] = {}
    for part in counts:
        for tag, n in part.items():
            total[tag] = total.get(tag, 0) + n
    return {tag: n for tag, n in total.items() if n}


def leaderboard_row(preset: str, summary: dict[str, Any], evals: dict[str, dict[str, Any]],
                    offline: dict[str, Any], properties: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    """One preset's line of the leaderboard: success per task and overall and failures by tag from the evaluations,
    latency from the timing of this run (``time_preset``), calls per episode and memory from the evaluations."""
    name, recipes = parse_entry(preset)
    p = PRESETS[name]
    budgets = [e["budget"] for e in evals.values()]
    model = next(iter(evals.values()))["model"]
    per_action = timing["latency_per_action_ms"]
    per_task = {t: e["aggregated"]["pc_success"] / 100 for t, e in evals.items()}
    # Evaluations written before failure tags have no counts.
    failures = summed_counts(info.get("failures", {}).get("overall", {}) for info in evals.values())
    return {
        "preset": preset, "recipes": [r.name for r in recipes], "census": p.census, "philosophy": p.resolved_philosophy(),
        "spec": p.resolved_spec().to_dict(), "note": p.note,
        "success": float(np.mean(list(per_task.values()))), "per_task": per_task, "failures": failures,
        "episodes": sum(len(e["per_episode"]) for e in evals.values()),
        "latency_per_call_ms_p50": timing["latency_per_call_ms"]["p50"],
        "latency_per_call_ms_p95": timing["latency_per_call_ms"]["p95"],
        "latency_per_action_ms": per_action,
        "effective_control_hz": 1e3 / per_action if per_action > 0 else float("inf"),
        "control_hz": timing["control_hz"],
        "feasible_at_control_hz": timing["feasible_at_control_hz"],
        "timing_loadavg": timing["loadavg_before"][0],
        "calls_per_episode": float(np.mean([b["cost_model"]["calls_per_episode_mean"] for b in budgets])),
        "deployment": model["deployment"], "future_at_deployment": future_at_deployment(model),
        "peak_memory_mb": float(max(b["peak_memory_mb"] for b in budgets)),
        "parameters": budgets[0]["parameters"],
        "train_time_s": summary["train_time_s"] + summary.get("substrate_prepare_time_s", 0.0),
        "train_steps": summary["steps"],
        "offline": {k: v for k, v in offline["offline"].items() if isinstance(v, float)},
        "properties": properties,
    }


def future_at_deployment(model: dict[str, Any]) -> str:
    """What a deployed model does with its future (from ``eval_info.json``'s model block): "none" (no future),
    "skipped" (a training objective only), "generated" before or with the action, or "planned" (rolled out per
    candidate by a planner). The census philosophy says what a system predicts; this says what it pays for at
    deployment, which is what the latency measures."""
    if not model["future_offsets"]:
        return "none"
    if model["planner"]:
        return "planned"
    return "generated" if model["future_at_inference"] == "predict" else "skipped"


def screen_correlations(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Spearman rank correlation between each offline screen and closed-loop success, over the presets that have
    the screen (at least 3). Errors should correlate negatively with success, PSNR and SSIM positively."""
    from scipy.stats import spearmanr

    screens = sorted({k for r in rows for k in r["offline"]})
    out = {}
    for screen in screens:
        have = [r for r in rows if screen in r["offline"] and np.isfinite(r["offline"][screen])]
        xs, ys = [r["offline"][screen] for r in have], [r["success"] for r in have]
        if len(have) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
            continue  # a rank correlation with a constant is undefined
        rho, p_value = spearmanr(xs, ys)
        if np.isfinite(rho):
            out[screen] = {"spearman": float(rho), "p_value": float(p_value), "presets": len(have)}
    return out


def pareto_front(rows: list[dict[str, Any]]) -> list[str]:
    """Presets no other preset beats on both success and latency per action (ties count as not beaten)."""
    def beaten(r: dict[str, Any]) -> bool:
        return any(o["success"] >= r["success"] and o["latency_per_action_ms"] <= r["latency_per_action_ms"]
                   and (o["success"] > r["success"] or o["latency_per_action_ms"] < r["latency_per_action_ms"])
                   for o in rows)

    return [r["preset"] for r in rows if not beaten(r)]


RENDER = "Render-and-Decode"
LEAN = ("Latent-Only", "Video-Generation-Free")


def central_claim(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The survey's claim in our numbers: does a latent-only or generation-free preset match the best
    render-and-decode preset's success, and at what fraction of its latency per action? "Match" means a success no
    more than one standard error of the difference below (two binomial proportions over each preset's episodes);
    of the presets that match, the fastest is compared. If none matches, the most successful lean preset is, and
    ``lean_matches`` is false. Asked again (``generating``) over the render-and-decode presets that generate their
    future when they act: a census philosophy says what a system predicts, while the latency pays for what it
    computes at deployment."""
    render = [r for r in rows if r["philosophy"] == RENDER]
    lean = [r for r in rows if r["philosophy"] in LEAN]
    claim = _compare(render, lean)
    if claim is not None:
        claim["generating"] = _compare([r for r in render if r["future_at_deployment"] == "generated"], lean)
    return claim


def _success_difference_se(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Standard error of the difference between two presets' success rates over their evaluation episodes."""
    return float(np.sqrt(sum(r["success"] * (1 - r["success"]) / r["episodes"] for r in (a, b))))


def _compare(render: list[dict[str, Any]], lean: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not render or not lean:
        return None
    best_render = max(render, key=lambda r: (r["success"], -r["latency_per_action_ms"]))
    matching = [r for r in lean if r["success"] >= best_render["success"] - _success_difference_se(best_render, r)]
    chosen = (min(matching, key=lambda r: (r["latency_per_action_ms"], -r["success"])) if matching
              else max(lean, key=lambda r: (r["success"], -r["latency_per_action_ms"])))
    return {"render_and_decode": best_render["preset"], "render_success": best_render["success"],
            "render_latency_per_action_ms": best_render["latency_per_action_ms"],
            "render_future_at_deployment": best_render["future_at_deployment"],
            "lean": chosen["preset"], "lean_success": chosen["success"],
            "lean_latency_per_action_ms": chosen["latency_per_action_ms"],
            "lean_matches": bool(matching), "matching": sorted(r["preset"] for r in matching),
            "success_difference": chosen["success"] - best_render["success"],
            "success_difference_se": _success_difference_se(best_render, chosen),
            "latency_ratio": best_render["latency_per_action_ms"] / chosen["latency_per_action_ms"],
            "mean_success": {"render_and_decode": float(np.mean([r["success"] for r in render])),
                             "lean": float(np.mean([r["success"] for r in lean]))}}


@dataclass(frozen=True)
class SeedRun:
    """One training seed of a preset in a protocol group: its train summary, evaluations per task and screens."""

    seed: int
    summary: dict[str, Any]
    evals: dict[str, dict[str, Any]]
    offline: dict[str, Any]
    shifts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The generalization benchmark's cells (``shift_grid``), if the protocol has them."""


def joined_task_runs(runs: list[SeedRun]) -> list[SeedRun]:
    """Under a protocol with one model per task, each seed's runs of the group's tasks as one seed run of the group:
    their evaluations joined, their training times added up (the group's models cost that much) and their offline
    screens averaged over the tasks."""
    by_seed: dict[int, list[SeedRun]] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(run)
    joined = []
    for seed, parts in by_seed.items():
        times = {key: sum(p.summary.get(key, 0.0) for p in parts) for key in ("train_time_s", "substrate_prepare_time_s")}
        screens = [p.offline["offline"] for p in parts]
        offline = {key: float(np.mean([s[key] for s in screens])) for key, value in screens[0].items()
                   if isinstance(value, float)}
        joined.append(SeedRun(seed, {**parts[0].summary, **times, "models": len(parts)},
                              {task: info for p in parts for task, info in p.evals.items()}, {"offline": offline}))
    return joined


def protocol_row(preset: str, runs: list[SeedRun], timing: dict[str, Any]) -> dict[str, Any]:
    """One preset's line in one group of a protocol: success as the mean over training seeds (each the mean over
    the group's tasks) with its spread over seeds and a 95 % Wilson interval over every episode, per-task success
    and offline screens averaged over seeds, failures counted over all of them, latency from ``timing``;
    ``models_per_seed`` is 1, or the group's tasks where each has its own model (``joined_task_runs``)."""
    from scipy.stats import binomtest

    per_seed = [leaderboard_row(preset, r.summary, r.evals, r.offline, {}, timing) for r in runs]
    successes = [r["success"] for r in per_seed]
    episodes = [e for r in runs for info in r.evals.values() for e in info["per_episode"]]
    interval = binomtest(sum(e["success"] for e in episodes), len(episodes)).proportion_ci(method="wilson")
    failures = summed_counts(r["failures"] for r in per_seed)
    screens = dict.fromkeys(k for r in per_seed for k in r["offline"])  # in order: the same figures, the same bytes
    return {**per_seed[0], "success": float(np.mean(successes)), "success_per_seed": successes,
            "seeds": [r.seed for r in runs],
            "success_spread": float(np.std(successes, ddof=1)) if len(successes) > 1 else None,
            "ci95": [float(interval.low), float(interval.high)], "episodes": len(episodes),
            "per_task": {t: float(np.mean([r["per_task"][t] for r in per_seed])) for t in per_seed[0]["per_task"]},
            "offline": {k: float(np.mean([r["offline"][k] for r in per_seed if k in r["offline"]])) for k in screens},
            "train_time_s": float(np.mean([r["train_time_s"] for r in per_seed])), "failures": failures,
            "models_per_seed": runs[0].summary.get("models", 1),
            **({"shifts": shift_rows(runs)} if runs[0].shifts else {})}


SHIFT_BASELINE = "vla"
"""The preset every other is compared with under shift: the policy without a world model."""


def shift_summary(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The generalization grid's two questions, at every factor's middle level: how much of its unshifted success
    each entry keeps at worst (the goal: 0.8 for the best), and which entries beat the baseline's shifted success
    with the 95 % intervals apart (the lower bound above the baseline's upper bound)."""
    if not rows or not rows[0].get("shifts"):
        return None
    middle = [spec for spec, c in rows[0]["shifts"].items() if c["level"] == MIDDLE]
    if not middle:  # --shift-levels left the middle level out
        return None
    worst = {}
    for r in rows:
        kept = {spec: r["shifts"][spec]["relative"] for spec in middle}
        spec = min(kept, key=lambda s: -1.0 if kept[s] is None else kept[s])
        worst[r["preset"]] = {"shift": spec, "kept": kept[spec]}
    baseline = next((r for r in rows if r["preset"] == SHIFT_BASELINE), None)
    beats = None if baseline is None else {
        spec: [r["preset"] for r in rows if r is not baseline
               and r["shifts"][spec]["ci95"][0] > baseline["shifts"][spec]["ci95"][1]] for spec in middle}
    return {"baseline": SHIFT_BASELINE if baseline else None, "worst_kept_at_middle": worst,
            "beats_baseline": beats}


def shift_rows(runs: list[SeedRun]) -> dict[str, dict[str, Any]]:
    """Each generalization cell over a preset's seeds: shifted success with its 95 % Wilson interval, the unshifted
    success of the same starts, and their ratio with a 95 % paired bootstrap interval (None where the unshifted
    twins all failed: nothing to keep)."""
    from scipy.stats import binomtest, bootstrap

    rows = {}
    for spec, first in runs[0].shifts.items():
        shifted = np.array([s for r in runs for s in r.shifts[spec]["shifted"]], float)
        unshifted = np.array([u for r in runs for u in r.shifts[spec]["unshifted"]], float)
        interval = binomtest(int(shifted.sum()), len(shifted)).proportion_ci(method="wilson")
        relative = relative_ci = None
        if unshifted.any():
            relative = float(shifted.mean() / unshifted.mean())
            ratio = bootstrap((shifted, unshifted), lambda s, u, axis=-1: s.mean(axis) / np.maximum(u.mean(axis),
                              1e-9), paired=True, n_resamples=2000, method="percentile", random_state=0)
            relative_ci = [float(ratio.confidence_interval.low), float(ratio.confidence_interval.high)]
        rows[spec] = {"factor": first["factor"], "level": first["level"], "tasks": first["tasks"],
                      "episodes": len(shifted), "success": float(shifted.mean()),
                      "expert": float(np.mean(first["expert"])),  # every seed runs the same starts
                      "ci95": [float(interval.low), float(interval.high)], "unshifted": float(unshifted.mean()),
                      "relative": relative, "relative_ci95": relative_ci}
    return rows
