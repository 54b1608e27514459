"""The WAM-Bench report: one self-contained folder (``report.html`` with its figures and videos) from a leaderboard.

Figures are drawn with matplotlib, the page with a Jinja2 template; nothing is fetched from the network, so the
report opens offline and in a headless browser (``tests/test_bench.py`` renders it in Chromium).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jinja2

from wam.envs import DEFAULT_SUITE, get_suite

STYLE = """<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f3f3f3; } td.l { text-align: left; }
tr.front td:first-child { font-weight: bold; } tr.ref td { font-style: italic; background: #fafafa; }
.videos { display: flex; flex-wrap: wrap; gap: 12px; }
.videos figure { margin: 0; font-size: 12px; }
</style>"""
"""The page style of both reports."""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WAM-Bench: accuracy at budget</title>
""" + STYLE + """</head><body>
<h1>WAM-Bench: accuracy at budget</h1>
<p>{{ board.rows|length }} presets on {{ board.tasks|length }} MetaWorld v3 tasks (vision track:
{{ board.tasks|join(", ") }}); {{ board.config.demos }} demonstrations per task,
{{ board.config.episodes }} evaluation episodes per task on held-out seeds, {{ board.config.steps }} training steps per
preset.</p>
<p>Command: <code>{{ board.command }}</code><br>Machine: {{ board.machine.cpu }} ({{ board.machine.cpu_cores }} cores),
torch {{ board.machine.torch }}, device {{ board.machine.device }}. Latencies come from the timing pass at the end
of this command (below); on a shared machine they vary, so compare them as ratios.</p>

{% macro lean_against(c) -%}
{% if c.lean_matches %}the fastest latent-only or generation-free preset that matches it (a success no more than one
standard error of the difference below), <b>{{ c.lean }}</b>,{% else %}no latent-only or generation-free preset comes
within one standard error of it; the most successful, <b>{{ c.lean }}</b>,{% endif %} succeeds in
{{ pct1(c.lean_success) }} at {{ ms(c.lean_latency_per_action_ms) }}: a difference of
{{ "%+.1f"|format(100 * c.success_difference) }} points (standard error {{ "%.1f"|format(100 * c.success_difference_se) }})
at {{ "%.2g"|format(1 / c.latency_ratio) }}x the latency ({{ "%.1f"|format(c.latency_ratio) }}x faster).
{%- if c.lean_matches %} Presets that match: {{ c.matching|join(", ") }}.{% endif %}
{%- endmacro %}
{% if board.central_claim %}{% set c = board.central_claim %}
<h2>Do latent-only and generation-free models match render-and-decode?</h2>
<p id="claim">The best render-and-decode preset, <b>{{ c.render_and_decode }}</b> (its future
{{ c.render_future_at_deployment }} at deployment), succeeds in {{ pct1(c.render_success) }} of episodes at
{{ ms(c.render_latency_per_action_ms) }} of model time per action; {{ lean_against(c) }}
Mean success over each group: {{ pct1(c.mean_success.lean) }} (latent-only and generation-free) against
{{ pct1(c.mean_success.render_and_decode) }} (render-and-decode).</p>
{% if c.generating and c.generating.render_and_decode != c.render_and_decode %}{% set g = c.generating %}
<p id="claim-generating">Among the render-and-decode presets that generate their future when they act, the best,
<b>{{ g.render_and_decode }}</b>, succeeds in {{ pct1(g.render_success) }} at {{ ms(g.render_latency_per_action_ms) }}
per action; {{ lean_against(g) }}</p>
{% endif %}{% endif %}

<h2>Accuracy at budget</h2>
<p>Success: closed-loop episodes per task. Latency: {{ board.config.timing_calls }} single-thread calls per preset,
timed in this run one preset after another ({% set load = board.rows | map(attribute="timing_loadavg") | list %}
1-minute load average {{ "%.2f"|format(load | min) }}–{{ "%.2f"|format(load | max) }} on {{ board.machine.cpu_cores }}
cores).</p>
<table id="leaderboard">
<tr><th>preset</th><th>success</th>{% for t in board.tasks %}<th>{{ t[:-3] }}</th>{% endfor %}
<th>latency/call p50</th><th>p95</th><th>latency/action</th><th>effective rate</th>
<th>feasible at {{ "%.0f"|format(board.rows[0].control_hz) }} Hz</th><th>calls/episode</th><th>peak memory</th>
<th>parameters</th><th>training</th><th class="l">4-tuple</th><th class="l">philosophy</th>
<th class="l">future at deployment</th></tr>
{% for r in board.rows %}<tr{% if r.preset in board.pareto_front %} class="front"{% endif %}>
<td class="l">{{ r.preset }}</td><td>{{ pct1(r.success) }}</td>
{% for t in board.tasks %}<td>{{ pct(r.per_task[t]) }}</td>{% endfor %}
<td>{{ ms(r.latency_per_call_ms_p50) }}</td><td>{{ ms(r.latency_per_call_ms_p95) }}</td>
<td>{{ ms(r.latency_per_action_ms) }}</td><td>{{ "%.0f"|format(r.effective_control_hz) }} Hz</td>
<td>{{ "yes" if r.feasible_at_control_hz else "no" }}</td><td>{{ "%.1f"|format(r.calls_per_episode) }}</td>
<td>{{ "%.0f"|format(r.peak_memory_mb) }} MB</td><td>{{ "%.2f"|format(r.parameters / 1e6) }} M</td>
<td>{{ "%.0f"|format(r.train_time_s / 60) }} min</td>
<td class="l">{{ r.spec.substrate }} · {{ r.spec.backbone }} · {{ r.spec.coupling }} · {{ r.spec.deployment }}</td>
<td class="l">{{ r.philosophy }}</td><td class="l">{{ r.future_at_deployment }}</td></tr>
{% endfor %}</table>
<p>Bold: on the Pareto front of success against latency per action. Latency per action is total model time over
all executed actions; feasibility uses the 95th-percentile call against the control period times the actions the
call covers. Future at deployment: what the deployed model does with its predicted future (skipped: a training
objective only; generated: predicted before or with the action; planned: rolled out for each candidate by a
planner), which is what its latency pays for.</p>

{% if failure_tags %}<h2>Failed episodes by failure tag</h2>
<table id="failures"><tr><th>preset</th><th>episodes</th><th>failed</th>{% for tag in failure_tags %}<th>{{ tag }}</th>
{% endfor %}</tr>{% for r in board.rows %}<tr><td class="l">{{ r.preset }}</td><td>{{ r.episodes }}</td>
<td>{{ r.failures.values()|sum }}</td>{% for tag in failure_tags %}<td>{{ r.failures.get(tag, 0) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p>{% for tag, text in failure_tags.items() %}<b>{{ tag }}</b>: {{ text }}{{ "." if loop.last else "; " }}{% endfor %}</p>
{% endif %}
<h2>Success against latency</h2>
<img id="pareto" src="figures/pareto.png" alt="success against latency per action, with the Pareto front">
{% if sweeps %}<p>Fidelity-latency curves on {{ board.tasks[0] }} ({{ board.config.sweep_episodes }} episodes per
operating point): the same weights at fewer or more sampler steps, with the future skipped or generated.</p>{% endif %}
{% for f in sweeps %}<img class="sweep" src="{{ f }}" alt="fidelity-latency curve">{% endfor %}

<h2>Screens against success</h2>
<table id="screens"><tr><th>preset</th><th>success</th>{% for s in screens %}<th>{{ s }}</th>{% endfor %}</tr>
{% for r in board.rows %}<tr><td class="l">{{ r.preset }}</td><td>{{ pct1(r.success) }}</td>
{% for s in screens %}<td>{{ "%.3g"|format(r.offline[s]) if s in r.offline else "–" }}</td>{% endfor %}</tr>
{% endfor %}<tr><td class="l">Spearman with success</td><td></td>
{% for s in screens %}<td>{% if s in board.screen_correlations %}{{ "%+.2f"|format(board.screen_correlations[s].spearman)
}} (n={{ board.screen_correlations[s].presets }}){% else %}–{% endif %}</td>{% endfor %}</tr></table>

<h2>The five properties</h2>
<table id="properties"><tr><th>preset</th><th>interactability</th><th>causality leak</th><th>persistence: PSNR at
the longest dream horizon</th><th>dream peak memory</th><th>physical plausibility: executable chunk steps</th>
<th>generalization: shifted / unshifted success</th>{% for s in shifts %}<th>success, {{ s }}</th>{% endfor %}</tr>
{% for r in board.rows %}{% set p = r.properties %}<tr><td class="l">{{ r.preset }}</td>
<td>{{ "%.3f"|format(p.interactability) if p.interactability is not none else "– (future not action-conditioned)" }}</td>
<td>{{ "%.1g"|format(p.causality_leak) }}</td>
<td>{% if p.persistence %}{{ "%.1f"|format(p.persistence.psnr_last) }} dB at {{ p.persistence.horizon }} steps
{% else %}– (no pixel dream){% endif %}</td>
<td>{{ "%.0f MB"|format(p.persistence.peak_memory_mb) if p.persistence else "–" }}</td>
<td>{{ pct(p.executable_fraction) }}</td>
<td>{{ "%.2f"|format(p.generalization.relative) if p.generalization.relative is not none else "–" }}</td>
{% for s in shifts %}<td>{{ pct(p.generalization.success[s]) if s in p.generalization.success else "–" }}</td>
{% endfor %}</tr>
{% endfor %}</table>
<p>Interactability: relative change of the predicted future when the action chunk is swapped for another window's.
Causality: largest change of the action when every input after the current step is replaced by noise (must be 0).
Shifts, evaluated on {{ board.rows[0].properties.generalization.tasks|join(", ") }}:
{% for s, text in shift_notes.items() %}<b>{{ s }}</b>: {{ text }}{{ "." if loop.last else "; " }}{% endfor %}</p>

<h2>Training curves</h2>
<img id="training" src="figures/training.png" alt="smoothed training loss per preset">

<h2>Rollouts</h2>
<div class="videos">{% for v in videos %}<figure><video src="{{ v.path }}" width="192" height="192" controls muted
loop></video><figcaption>{{ v.preset }}: {{ v.task }}</figcaption></figure>{% endfor %}</div>

<h2>Presets</h2>
<table id="presets"><tr><th>preset</th><th class="l">census method</th><th class="l">kept / scaled down</th></tr>
{% for r in board.rows %}<tr><td class="l">{{ r.preset }}</td><td class="l">{{ r.census or "–" }}</td>
<td class="l">{{ r.note }}</td></tr>{% endfor %}</table>
</body></html>
"""


def _pareto_figure(board: dict[str, Any], path: Path) -> None:
    """Success (with its standard error) against latency per action, coloured by philosophy. The y axis is zoomed on
    the presets above 50 % so that one-point differences show; the presets below are named in a note."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = board["rows"]
    shown = [r for r in rows if r["success"] >= 0.5] or rows
    below = [r for r in rows if r not in shown]
    colours = dict(zip(sorted({r["philosophy"] for r in rows}), plt.get_cmap("tab10").colors))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    labelled: list[tuple[float, float]] = []
    for r in shown:
        front = r["preset"] in board["pareto_front"]
        x, y = r["latency_per_action_ms"], 100 * r["success"]
        se = 100 * (r["success"] * (1 - r["success"]) / r["episodes"]) ** 0.5
        ax.errorbar(x, y, yerr=se, fmt="o", ms=7 if front else 5, color=colours[r["philosophy"]],
                    mec="black" if front else "none", elinewidth=0.8, capsize=2)
        # A preset on top of an earlier one (same latency and success) is labelled below it.
        crowded = any(abs(np.log10(x / lx)) < 0.03 and abs(y - ly) < 0.3 for lx, ly in labelled)
        labelled.append((x, y))
        ax.annotate(r["preset"], (x, y), fontsize=8, xytext=(4, -10 if crowded else 4), textcoords="offset points")
    front = sorted((r for r in shown if r["preset"] in board["pareto_front"]), key=lambda r: r["latency_per_action_ms"])
    ax.plot([r["latency_per_action_ms"] for r in front], [100 * r["success"] for r in front], color="black",
            lw=0.8, drawstyle="steps-post", label="Pareto front")
    for philosophy in sorted({r["philosophy"] for r in shown}):
        ax.scatter([], [], color=colours[philosophy], label=philosophy)
    ax.set_xscale("log")
    ax.set_ylim(100 * min(r["success"] for r in shown) - 3, 101)
    if below:
        ax.text(0.01, 0.01, "below the axis: " + ", ".join(
            f"{r['preset']} {100 * r['success']:.1f} % at {r['latency_per_action_ms']:.1f} ms" for r in below),
            transform=ax.transAxes, fontsize=8, va="bottom")
    ax.set_xlabel("model time per executed action (ms, log scale)")
    ax.set_ylabel("success (%, bars: one standard error)")
    ax.set_title("success against latency")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _training_figure(curves: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for preset, log in curves.items():
        ax.plot([e["step"] for e in log], [e["loss_smooth"] for e in log], marker="." if len(log) < 3 else None,
                label=preset)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (smoothed; each preset's own objective)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(board: dict[str, Any], curves: dict[str, list[dict[str, Any]]], out: Path, results: Path) -> Path:
    """Write ``results/report.html`` with its figures, and copy one rollout video per preset next to it."""
    (results / "figures").mkdir(parents=True, exist_ok=True)
    _pareto_figure(board, results / "figures" / "pareto.png")
    _training_figure(curves, results / "figures" / "training.png")
    videos = []
    for r in board["rows"]:
        for task in board["tasks"]:
            found = sorted((out / r["preset"] / "eval" / task / "videos").glob("*.mp4"))
            if found:
                target = results / "videos" / f"{r['preset']}_{task}.mp4"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(found[0], target)
                videos.append({"preset": r["preset"], "task": task, "path": f"videos/{target.name}"})
                break
    sweeps = [f"sweeps/{r['preset']}/sweep.png" for r in board["rows"] if r.get("sweep")]
    screens = sorted({k for r in board["rows"] for k in r["offline"]})
    # The shifts the probe measured, as it recorded them (leaderboards of older versions name theirs alone).
    probed = [r["properties"]["generalization"] for r in board["rows"]]
    shifts = list(dict.fromkeys(s for p in probed for s in p["success"]))
    shift_notes = {s: text for p in probed for s, text in p.get("shifts", {}).items()}
    # Leaderboards written before failure tags have no counts to show.
    failure_tags = get_suite(board.get("suite", DEFAULT_SUITE)).failure_tags if any(
        r.get("failures") for r in board["rows"]) else {}
    return _render(TEMPLATE, results, board=board, videos=videos, sweeps=sweeps, screens=screens, shifts=shifts,
                   shift_notes=shift_notes, failure_tags=failure_tags)


def _render(template: str, results: Path, **context: Any) -> Path:
    """``results/report.html`` from ``template``, with the number formats both reports use."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["pct"] = lambda x: f"{100 * x:.0f}"
    html = env.from_string(template).render(
        pct=lambda x: f"{100 * x:.0f} %", pct1=lambda x: f"{100 * x:.1f} %",
        ms=lambda x: f"{x:.1f} ms" if x >= 1 else f"{x:.2f} ms", **context)
    path = results / "report.html"
    path.write_text(html)
    return path


PROTOCOL_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>WAM-Bench: {{ p.name }}</title>
""" + STYLE + """</head><body>
<h1>WAM-Bench, protocol {{ p.name }}</h1>
<p>{{ p.description }}. Training seeds: {{ p.seeds|join(", ") }}{% if p.headline %} for {{ p.headline|join(", ") }},
{{ p.seeds[0] }} for the others{% endif %}.</p>
{% if p.deviations %}<p id="deviations">Departs from the protocol in: {% for k, d in p.deviations.items() %}{{ k }}
{{ d.ours }} (protocol: {{ d.protocol }}){{ "." if loop.last else ", " }}{% endfor %}</p>{% endif %}
<p>Command: <code>{{ board.command }}</code><br>Machine: {{ board.machine.cpu }} ({{ board.machine.cpu_cores }} cores),
torch {{ board.machine.torch }}, device {{ board.machine.device }}.</p>
{% for group, g in board.groups.items() %}
<h2 id="group-{{ group }}">{{ group }} ({{ g.tasks|length }} tasks)</h2>
<table class="group"><tr><th>preset</th><th>success</th><th>spread over seeds</th><th>95 % interval</th>
<th>per seed</th>{% for t in g.tasks %}<th>{{ t[:-3] }}</th>{% endfor %}<th>latency/action</th><th>calls/episode</th>
<th>parameters</th><th class="l">philosophy</th></tr>
{% for r in g.rows %}<tr><td class="l">{{ r.preset }}</td><td><b>{{ pct1(r.success) }}</b></td>
<td>{{ "± %.1f"|format(100 * r.success_spread) if r.success_spread is not none else "–" }}</td>
<td>{{ pct1(r.ci95[0]) }} – {{ pct1(r.ci95[1]) }}</td>
<td>{{ r.success_per_seed|map("pct")|join(" / ") }}</td>
{% for t in g.tasks %}<td>{{ pct(r.per_task[t]) }}</td>{% endfor %}
<td>{{ ms(r.latency_per_action_ms) }}</td><td>{{ "%.1f"|format(r.calls_per_episode) }}</td>
<td>{{ "%.2f"|format(r.parameters / 1e6) }} M</td><td class="l">{{ r.philosophy }}</td></tr>
{% endfor %}<tr class="ref"><td class="l">scripted expert, same starts</td><td>{{ pct1(g.expert.success) }}</td>
<td colspan="3"></td>{% for t in g.tasks %}<td>{{ pct(g.expert.per_task[t]) }}</td>{% endfor %}<td colspan="4"></td></tr>
{% for ref in g.references %}<tr class="ref"><td class="l">{{ ref.system }} (published)</td>
<td>{{ pct1(ref.success) }}</td><td colspan="{{ 3 + g.tasks|length + 4 }}" class="l">{{ ref.source }}</td></tr>
{% endfor %}</table>
{% if g.free_goals and g.free_goals.marker_pixels %}<p class="free-goals">Goal placed at random at every reset with
no body placed with it, so that the image shows it only through the simulator's goal marker; pixels the marker covers
at {{ g.free_goals.image_size }}x{{ g.free_goals.image_size }} (0: nothing shows the goal): {% for t, n in
g.free_goals.marker_pixels.items() %}{{ t }} {{ n }}{{ ", " if not loop.last }}{% endfor %}.</p>{% endif %}
<p>Failed episodes by failure tag (all seeds and tasks):</p>
<table class="failures"><tr><th>preset</th><th>episodes</th><th>failed</th>
{% for tag in board.failure_tags %}<th>{{ tag }}</th>{% endfor %}</tr>
{% for r in g.rows %}<tr><td class="l">{{ r.preset }}</td><td>{{ r.episodes }}</td>
<td>{{ r.failures.values()|sum }}</td>{% for tag in board.failure_tags %}<td>{{ r.failures.get(tag, 0) }}</td>{% endfor %}
</tr>{% endfor %}</table>
{% set heat = heat_columns[group] %}{% if heat %}
<h3 id="shifts-{{ group }}">Under declared shifts: success kept</h3>
<p>Each cell: the shifted success over the unshifted success of the same starts (the first seeds of the main
evaluation; 1.00 keeps everything), coloured from red (0) to green (1), and beneath it the shifted success. Hover
for the 95 % intervals and the episodes. The last row: the scripted expert's success on the same starts under the
shift, the ceiling of each cell. Levels and what they change: <code>wam eval --list-shifts</code>.</p>
<table class="heat"><tr><th rowspan="2">preset</th>{% for f, levels in heat %}<th colspan="{{ levels|length }}">{{ f }}
</th>{% endfor %}</tr><tr>{% for f, levels in heat %}{% for l in levels %}<th>{{ l }}</th>{% endfor %}{% endfor %}</tr>
{% for r in g.rows %}<tr><td class="l">{{ r.preset }}</td>{% for f, levels in heat %}{% for l in levels %}
{% set c = r.shifts[f ~ "=" ~ l] %}<td style="background: {{ heat_colour(c.relative) }}" title="{{ c.episodes }}
episodes on {{ c.tasks|join(", ") }}; success {{ pct1(c.success) }} [{{ pct1(c.ci95[0]) }}, {{ pct1(c.ci95[1]) }}],
unshifted {{ pct1(c.unshifted) }}{% if c.relative_ci95 %}; kept {{ "%.2f"|format(c.relative_ci95[0]) }} to
{{ "%.2f"|format(c.relative_ci95[1]) }}{% endif %}">{{ "%.2f"|format(c.relative) if c.relative is not none else "–" }}
<br><small>{{ pct(c.success) }}</small></td>{% endfor %}{% endfor %}</tr>
{% endfor %}{% set first = g.rows[0].shifts %}{% if (first.values()|first).expert is defined %}<tr class="ref">
<td class="l">scripted expert, same starts</td>{% for f, levels in heat %}{% for l in levels %}<td>
<small>{{ pct(first[f ~ "=" ~ l].expert) }}</small></td>{% endfor %}{% endfor %}</tr>{% endif %}</table>
{% set s = g.shift_summary %}{% if s %}
<p id="shift-summary-{{ group }}">At every factor's middle level, the least success kept:
{% for preset, w in s.worst_kept_at_middle.items() %}{{ preset }} {{ "%.2f"|format(w.kept) if w.kept is not none
else "–" }} ({{ w.shift }}){{ "." if loop.last else "; " }}{% endfor %}
{% if s.baseline %}{% set winners = s.beats_baseline.values()|sum(start=[]) %}{% if winners %}Beating {{ s.baseline }}'s
shifted success with the 95 % intervals apart: {% for spec, names in s.beats_baseline.items() if names %}{{ spec }}:
{{ names|join(", ") }}{{ "." if loop.last else "; " }}{% endfor %}{% else %}No entry beats {{ s.baseline }}'s shifted
success at any factor's middle level with the 95 % intervals apart.{% endif %}{% else %}(The baseline is not
among these entries: no comparison.){% endif %}</p>{% endif %}{% endif %}
{% if g.screen_correlations %}<p>Offline screens against success (Spearman over presets):
{% for s, c in g.screen_correlations.items() %}{{ s }} {{ "%+.2f"|format(c.spearman) }} (n={{ c.presets }}){{ "" if loop.last
else "; " }}{% endfor %}.</p>{% endif %}
{% if g.central_claim %}{% set c = g.central_claim %}<p>Best render-and-decode preset: {{ c.render_and_decode }}
({{ pct1(c.render_success) }}); {{ "a" if c.lean_matches else "no" }} latent-only or generation-free preset within
one standard error{% if c.lean_matches %} ({{ c.lean }}, {{ pct1(c.lean_success) }},
{{ "%.1f"|format(c.latency_ratio) }}x faster per action){% endif %}.</p>{% endif %}
{% endfor %}
<h2>How this differs from the published protocol</h2>
<p>{{ p.differences }}</p>
<h2>Failure tags</h2>
<table><tr><th>tag</th><th class="l">definition (simulator ground truth)</th></tr>
{% for tag, text in board.failure_tags.items() %}<tr><td class="l">{{ tag }}</td><td class="l">{{ text }}</td></tr>
{% endfor %}</table>
</body></html>
"""


def write_protocol_report(board: dict[str, Any], results: Path) -> Path:
    """Write ``results/report.html`` for a protocol's leaderboard: one table per group with the published figures
    beneath ours, failures by tag, and how the protocols differ."""
    heat_columns = {}
    for group, g in board["groups"].items():  # factor -> its levels, in the order the benchmark ran them
        cells = [(c["factor"], c["level"]) for c in g["rows"][0].get("shifts", {}).values()] if g["rows"] else []
        heat_columns[group] = [(f, [lv for ff, lv in cells if ff == f]) for f in dict.fromkeys(f for f, _ in cells)]
    return _render(PROTOCOL_TEMPLATE, results, board=board, p=board["protocol"], heat_columns=heat_columns,
                   heat_colour=heat_colour)


def heat_colour(kept: float | None) -> str:
    """A heat-map cell's colour: red where nothing of the unshifted success is kept, green where all of it is."""
    if kept is None:
        return "#eee"
    return f"hsl({120 * min(max(kept, 0.0), 1.0):.0f}, 65%, 78%)"
