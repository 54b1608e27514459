"""Terminal rendering of an ``eval_info.json``: the accuracy-at-budget table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_report(info: dict[str, Any], title: str = "accuracy at budget", console: Console | None = None) -> None:
    """Success per task next to latency, control rate, feasibility, memory and size, as measured in one run."""
    console = console or Console()
    budget, spec = info["budget"], info["model"]["spec"]
    table = Table(title=f"{title}: {spec['substrate']} · {spec['coupling']} · {spec['backbone']} · "
                        f"{spec['deployment']}")
    table.add_column("task")
    table.add_column("success", justify="right")
    table.add_column("episodes", justify="right")
    failures = info.get("failures")  # absent from evaluations written before failure tags
    if failures:
        table.add_column("failures (suite's failure tags)")
    for entry in info["per_task"]:
        table.add_row(entry["task"], f"{entry['metrics']['pc_success']:.0f}%", str(entry["metrics"]["n_episodes"]),
                      *([failure_summary(failures["per_task"][entry["task"]])] if failures else []))
    table.add_row("[bold]all[/bold]", f"[bold]{info['aggregated']['pc_success']:.1f}%[/bold]",
                  str(len(info["per_episode"])), *([failure_summary(failures["overall"])] if failures else []))
    console.print(table)
    lat = budget["latency_per_call_ms"]
    feasible = "yes" if budget["feasible_at_control_hz"] else "no"
    cost = Table(title="budget", show_header=False)
    cost.add_column("metric")
    cost.add_column("value", justify="right")
    deployment = info["model"].get("deployment") or {}
    dials = ", ".join(f"{k}={v}" for k, v in deployment.items() if k != "regime" and v is not None)
    calls = budget.get("cost_model", {}).get("calls_per_episode_mean")
    for name, value in (
        ("deployment", f"{deployment.get('regime', spec['deployment'])} ({dials})"),
        ("model calls per episode", "-" if calls is None else f"{calls:.1f}"),
        ("latency per call p50 / p95 / max", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['max']:.1f} ms"),
        (f"latency per action (K={budget['n_action_steps']})", f"{budget['latency_per_action_ms']:.2f} ms"),
        ("effective control rate", f"{budget['effective_control_hz']:.0f} Hz"),
        (f"feasible at {budget['control_hz']:.0f} Hz (p95/K < 1/f)", f"{feasible} ({budget['feasibility_margin']:.1f}x)"),
        ("peak memory during evaluation", f"{budget['peak_memory_mb']:.0f} MB"),
        ("parameters", f"{budget['parameters'] / 1e6:.2f} M"),
    ):
        cost.add_row(name, value)
    shared = budget.get("episodes_per_call", 1.0)
    if shared > 1:  # lockstep evaluation: the latencies above come from an episode run again alone
        cost.add_row("episodes served per call", f"{shared:.1f} (latency: one episode timed alone)")
    console.print(cost)
    machine = info["machine"]
    console.print(f"measured on {machine['cpu']} ({machine['cpu_cores']} cores), torch {machine['torch']}, "
                  f"device {machine['device']}")


def failure_summary(counts: dict[str, int]) -> str:
    """``never-reached 3, misplaced 1``: the tags that occurred, most frequent first."""
    return ", ".join(f"{tag} {n}" for tag, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n) or "-"


def print_offline(info: dict[str, Any], console: Console | None = None) -> None:
    """The offline screens as a two-column table."""
    console = console or Console()
    spec = info["model"]["spec"]
    table = Table(title=f"offline screens: {spec['substrate']} · {spec['coupling']} · {spec['backbone']}",
                  show_header=False)
    table.add_column("screen")
    table.add_column("value", justify="right")
    for key, value in info["offline"].items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)


def print_sweep(sweep: dict[str, Any], console: Console | None = None) -> None:
    """One row per operating point of a fidelity-latency sweep."""
    console = console or Console()
    table = Table(title=f"fidelity-latency sweep: {' '.join(sweep['grid'])}")
    for name in ("operating point", "success", "latency/call p50", "latency/action", "calls/episode", "feasible"):
        table.add_column(name, justify="left" if name == "operating point" else "right")
    for row in sweep["points"]:
        calls = row["calls_per_episode"]
        table.add_row(row["name"], f"{row['pc_success']:.0f}%", f"{row['latency_per_call_ms_p50']:.1f} ms",
                      f"{row['latency_per_action_ms']:.2f} ms", "-" if calls is None else f"{calls:.1f}",
                      "yes" if row["feasible_at_control_hz"] else "no")
    console.print(table)
