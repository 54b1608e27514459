"""Print WAM-Bench (``wam bench``) as Markdown: the accuracy-at-budget table and the central claim, or for a
protocol (``wam bench --protocol``) one table with a column per group, the published figures beneath ours, and the
failures by tag. Several results folders of one protocol, each with other groups (say the hard groups with every
preset and the easy ones with fewer), print as one table, a group's column marking the presets it lacks.

    usage: python benchmarks/bench_table.py [RESULTS_DIR ...]     (default: results/bench)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(board: dict) -> None:
    tasks = [t.removesuffix("-v3") for t in board["tasks"]]
    print("| preset | philosophy | future at deployment | mean | " + " | ".join(tasks)
          + " | latency / call p50 | latency / action | calls / episode | peak memory | parameters | training |")
    print("|---|---|---|---|" + "---|" * len(tasks) + "---|---|---|---|---|---|")
    for r in sorted(board["rows"], key=lambda r: -r["success"]):
        per_task = " | ".join(f"{100 * s:.0f}" for s in r["per_task"].values())
        print(f"| `{r['preset']}` | {r['philosophy']} | {r['future_at_deployment']} | **{100 * r['success']:.1f} %** "
              f"| {per_task} | {r['latency_per_call_ms_p50']:.1f} ms | {r['latency_per_action_ms']:.2f} ms "
              f"| {r['calls_per_episode']:.1f} | {r['peak_memory_mb']:.0f} MB | {r['parameters'] / 1e6:.2f} M "
              f"| {r['train_time_s'] / 60:.0f} min |")


def claim(c: dict | None, what: str) -> None:
    if c is None:
        print(f"\n{what}: not answerable (a side has no preset in this run)")
        return
    lean = (f"the fastest lean preset that matches it (within one standard error), `{c['lean']}`," if c["lean_matches"]
            else f"no lean preset matches it; the most successful, `{c['lean']}`,")
    print(f"\n{what}: best render-and-decode `{c['render_and_decode']}` ({c['render_future_at_deployment']}) "
          f"{100 * c['render_success']:.1f} % at {c['render_latency_per_action_ms']:.2f} ms/action; {lean} "
          f"{100 * c['lean_success']:.1f} % at {c['lean_latency_per_action_ms']:.2f} ms/action: success "
          f"{100 * c['success_difference']:+.1f} points (standard error {100 * c['success_difference_se']:.1f}), "
          f"latency ratio {c['latency_ratio']:.1f}x. Matching: {', '.join(c['matching']) or 'none'}. Mean success "
          f"lean {100 * c['mean_success']['lean']:.1f} %, render-and-decode "
          f"{100 * c['mean_success']['render_and_decode']:.1f} %")


def joined_groups(boards: list[dict]) -> dict[str, dict]:
    """The groups of several protocol leaderboards, in the order given; a group in two of them is refused."""
    names = [board["protocol"]["name"] for board in boards]
    if len(set(names)) > 1:
        sys.exit(f"error: the results folders hold different protocols ({', '.join(names)}); one table takes one")
    groups: dict[str, dict] = {}
    for board in boards:
        for name, group in board["groups"].items():
            if name in groups:
                sys.exit(f"error: group {name} is in two of the results folders; give each group once")
            groups[name] = group
    return groups


def seeds_line(board: dict) -> str:
    """Which training seeds a leaderboard's rows average."""
    headline = board["protocol"].get("headline")  # (boards before --headline: every entry at every seed)
    seeds = board["protocol"]["seeds"]
    return (f"{seeds} for {', '.join(f'`{e}`' for e in headline)}, [{seeds[0]}] for the others" if headline
            else f"{seeds}")


def protocol_table(boards: list[dict]) -> None:
    """Presets by group: mean success over seeds, its spread and 95 % interval; then the published references."""
    groups = joined_groups(boards)
    presets = list(dict.fromkeys(r["preset"] for g in groups.values() for r in g["rows"]))
    print("| preset | " + " | ".join(f"{g} ({len(groups[g]['tasks'])} tasks)" for g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    for preset in presets:
        cells = []
        for g in groups.values():
            r = next((r for r in g["rows"] if r["preset"] == preset), None)
            spread = "" if r is None or r["success_spread"] is None else f" ± {100 * r['success_spread']:.1f}"
            cells.append("–" if r is None else f"**{100 * r['success']:.1f}**{spread} "
                                               f"[{100 * r['ci95'][0]:.0f}–{100 * r['ci95'][1]:.0f}]")
        print(f"| `{preset}` | " + " | ".join(cells) + " |")
    print("| *scripted expert, same starts* | " + " | ".join(f"*{100 * g['expert']['success']:.1f}*"
                                                         for g in groups.values()) + " |")
    systems = list(dict.fromkeys(ref["system"] for g in groups.values() for ref in g["references"]))
    for system in systems:
        found = [next((ref for ref in g["references"] if ref["system"] == system), None) for g in groups.values()]
        print(f"| *{system}, published* | " + " | ".join("–" if ref is None else f"*{100 * ref['success']:.1f}*"
                                                        for ref in found) + " |")
    over = "; ".join(seeds_line(b) + ("" if len(boards) == 1 else f" on {', '.join(b['groups'])}") for b in boards)
    print(f"\nSuccess in percent: mean over training seeds ({over}) ± their standard deviation, [95 % Wilson interval "
          "over all episodes].")
    for name, g in groups.items():
        per_task_table(name, g)
    for name, g in groups.items():
        free = g.get("free_goals", {}).get("marker_pixels")
        if free:
            size = g["free_goals"]["image_size"]
            print(f"\n{name}: goal placed at random with no body placed with it, shown only by the simulator's goal "
                  f"marker; pixels the marker covers at {size}x{size} (0: nothing shows the goal): "
                  + ", ".join(f"{t.removesuffix('-v3')} {n}" for t, n in free.items()) + ".")
    tags = list(dict.fromkeys(tag for board in boards for tag in board["failure_tags"]))
    print("\nFailed episodes by tag (all seeds and tasks):\n")
    print("| group | preset | failed / episodes | " + " | ".join(tags) + " |")
    print("|---|---|---|" + "---|" * len(tags))
    for name, g in groups.items():
        for r in g["rows"]:
            counts = " | ".join(str(r["failures"].get(t, 0)) for t in tags)
            print(f"| {name} | `{r['preset']}` | {sum(r['failures'].values())} / {r['episodes']} | {counts} |")
    for name, g in groups.items():
        if g["rows"] and g["rows"][0].get("shifts"):
            shift_table(name, g)
    for board in boards:
        deviations = board["protocol"].get("deviations")
        if deviations:
            where = "" if len(boards) == 1 else f" ({', '.join(board['groups'])})"
            print(f"\nDeparts from the protocol{where} in: " + ", ".join(
                f"{k} {d['ours']} (protocol: {d['protocol']})" for k, d in deviations.items()) + ".")
    print(f"\nHow the protocols differ: {boards[0]['protocol']['differences']}")


def per_task_table(group: str, group_board: dict) -> None:
    """One group's success per task (percent, mean over seeds), presets by group success, the expert beneath."""
    tasks = group_board["tasks"]
    print(f"\n| {group} | " + " | ".join(t.removesuffix("-v3") for t in tasks) + f" | **{group}** |")
    print("|---|" + "---|" * (len(tasks) + 1))
    for r in sorted(group_board["rows"], key=lambda r: -r["success"]):
        print(f"| `{r['preset']}` | " + " | ".join(f"{100 * r['per_task'][t]:.0f}" for t in tasks)
              + f" | **{100 * r['success']:.1f}** [{100 * r['ci95'][0]:.0f}–{100 * r['ci95'][1]:.0f}] |")
    expert = group_board["expert"]
    print("| *scripted expert, same starts* | " + " | ".join(f"*{100 * expert['per_task'][t]:.0f}*" for t in tasks)
          + f" | *{100 * expert['success']:.1f}* |")


def shift_table(group: str, group_board: dict) -> None:
    """The generalization grid: per preset and factor level, the kept success (shifted over the unshifted success of
    the same starts) with its paired 95 % interval, and the shifted success."""
    rows = group_board["rows"]
    cells = list(rows[0]["shifts"])
    print(f"\n{group}: success kept under each factor level (shifted / unshifted success of the same starts, "
          "[95 % paired bootstrap interval]; shifted success in parentheses):\n")
    print("| factor=level | episodes | expert | " + " | ".join(f"`{r['preset']}`" for r in rows) + " |")
    print("|---|---|---|" + "---|" * len(rows))
    for spec in cells:
        def kept(c: dict) -> str:
            if c["relative"] is None:
                return f"– ({100 * c['success']:.0f} %)"
            low, high = c["relative_ci95"]
            return f"{c['relative']:.2f} [{low:.2f}, {high:.2f}] ({100 * c['success']:.0f} %)"
        first = rows[0]["shifts"][spec]
        expert = f"{100 * first['expert']:.0f} %" if "expert" in first else "–"  # older leaderboards lack it
        print(f"| {spec} | {first['episodes']} | {expert} | "
              + " | ".join(kept(r["shifts"][spec]) for r in rows) + " |")
    summary = group_board["shift_summary"]
    if summary is None:  # no middle-level cells
        return
    print("\nLeast success kept at a factor's middle level: " + "; ".join(
        f"`{p}` {'–' if w['kept'] is None else format(w['kept'], '.2f')} ({w['shift']})"
        for p, w in summary["worst_kept_at_middle"].items()) + ".")
    if summary["baseline"]:
        winners = {spec: names for spec, names in summary["beats_baseline"].items() if names}
        print(f"Beating `{summary['baseline']}` under shift with the 95 % intervals apart: " + (
            "; ".join(f"{spec}: {', '.join(names)}" for spec, names in winners.items()) if winners
            else "none, at any factor's middle level") + ".")


def read_board(results: Path) -> dict:
    """A results folder's leaderboard; one line naming it where it is missing or unreadable."""
    path = results / "leaderboard.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot read {path} ({e.__class__.__name__}: {e})")


def main(folders: list[Path]) -> None:
    boards = [read_board(results) for results in folders]
    for board in boards:
        print(f"`{board['command']}`\n")
    if all("protocol" in board for board in boards):
        protocol_table(boards)
        return
    if len(boards) > 1:
        sys.exit("error: several results folders make one table only where each holds a protocol's leaderboard")
    (board,) = boards
    table(board)
    c = board["central_claim"]
    claim(c, "Central claim (census philosophies)")
    if c is not None:
        claim(c["generating"], "Central claim (render-and-decode presets that generate their future)")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [Path("results/bench")])
