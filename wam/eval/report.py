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
    for task, row in info["per_task"].items():
        table.add_row(task, f"{row['pc_success']:.0f}%", str(row["n_episodes"]))
    table.add_row("[bold]all[/bold]", f"[bold]{info['aggregated']['pc_success']:.1f}%[/bold]",
                  str(len(info["per_episode"])))
    console.print(table)
    lat = budget["latency_per_call_ms"]
    feasible = "yes" if budget["feasible_at_control_hz"] else "no"
    cost = Table(title="budget", show_header=False)
    cost.add_column("metric")
    cost.add_column("value", justify="right")
    for name, value in (
        ("latency per call p50 / p95 / max", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['max']:.1f} ms"),
        (f"latency per action (K={budget['n_action_steps']})", f"{budget['latency_per_action_ms']:.2f} ms"),
        ("effective control rate", f"{budget['effective_control_hz']:.0f} Hz"),
        (f"feasible at {budget['control_hz']:.0f} Hz (p95/K < 1/f)", f"{feasible} ({budget['feasibility_margin']:.1f}x)"),
        ("peak memory during evaluation", f"{budget['peak_memory_mb']:.0f} MB"),
        ("parameters", f"{budget['parameters'] / 1e6:.2f} M"),
    ):
        cost.add_row(name, value)
    console.print(cost)
    machine = info["machine"]
    console.print(f"measured on {machine['cpu']} ({machine['cpu_cores']} cores), torch {machine['torch']}, "
                  f"device {machine['device']}")


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
