"""What ``wam eval`` is asked to do: ``EvalConfig``, and the grid of operating points of ``--sweep``.

One configuration serves the three evaluation modes (closed loop in ``wam.eval.runner``, the offline screens in
``wam.eval.offline``, the sweep in ``wam.eval.sweep``); ``wam.eval.run_eval`` picks the mode. Building it checks
every option, and every sweep point's, against its declared bounds before anything runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro
from annotated_types import Ge

from wam.couplings.planners import PlannerOverrides
from wam.deployment import DeploymentConfig
from wam.envs import check_suite_name
from wam.options import CheckedOptions, OptionError


@dataclass
class EvalConfig(CheckedOptions):
    """Evaluate a trained model closed-loop in its suite and report success with latency and memory."""

    run: Path
    """Run directory written by `wam train` (holds model/)."""
    tasks: str
    """Comma-separated tasks, suite/task names or groups of the model's suite (e.g. drawer-open-v3, metaworld/easy,
    pusht)."""
    episodes: Annotated[int, Ge(1)]
    """Episodes per task, on seeds disjoint from the demonstrations."""
    out: Path
    """Output directory for eval_info.json and videos."""
    video: Annotated[int, Ge(0)] = 0
    """Write rollout videos of the first K episodes of each task."""
    suite: str | None = None
    """The suite to evaluate in; default and only choice: the one the model was trained on."""
    max_steps: Annotated[int | None, Ge(1)] = None
    """Episode cap in control steps; default: the suite's own (MetaWorld 500, PushT 300)."""
    inference_steps: Annotated[int | None, Ge(1)] = None
    """Sampler steps per call; default: the model's."""
    future_horizon: Annotated[int | None, Ge(1)] = None
    """Generate only the first N future offsets at inference (a shorter prediction horizon); default: all."""
    future: Literal["skip", "predict", "truncate"] | None = None
    """For models with a future stream: skip it (act directly) or predict it first (imagine, then act)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Ge(1)] = 1
    """CPU threads per model call. One by default: a batch-of-one call of a small model gains little from more,
    and on a machine where another job holds a core, a second thread that waits for it made calls up to 100x
    slower (measured: 16 ms against 1.6 s per call)."""
    envs: Annotated[int, Ge(1)] = 4
    """Environments stepped in lockstep (each in a worker process); one batched model call serves every one that
    needs an action at a tick. Success and steps equal one-at-a-time evaluation's (--envs 1) for the same seeds,
    rewards to float precision; the latency per call is then that of the shared call (eval_info's budget says how
    many episodes each call served)."""
    time_alone: bool = True
    """After a batched evaluation (--envs > 1), run the first episode again alone and take the budget's latency and
    feasibility from it: a shared call takes longer than one robot would wait. `wam bench` turns it off, since its
    own timing pass measures every preset's latency."""
    seed: Annotated[int, Ge(0)] = 0
    """Offset into the evaluation seeds (episode j of a task uses seed EVAL_SEED_BASE + seed + j)."""
    deploy: tyro.conf.OmitArgPrefixes[DeploymentConfig] = field(default_factory=DeploymentConfig)
    """Deployment regime and its dials (K, temporal ensembling, adaptive surprise threshold, KV cache, decode,
    test-time adaptation)."""
    sweep: tuple[str, ...] = ()
    """Evaluate a grid of operating points instead of one, e.g. --sweep inference-steps=2,5,10 n-action-steps=4,8
    (dials: inference-steps, future, future-horizon, n-action-steps, deployment, ensemble, surprise, decode,
    kv-cache, adapt-steps); writes sweep.json and sweep.png (success against latency) into --out. See wam.eval.sweep."""
    planner: PlannerOverrides = field(default_factory=PlannerOverrides)
    """Rollout models: change the search at evaluation time (the weights stay)."""
    offline: bool = False
    """Instead of closed-loop episodes, run the offline screens on held-out demonstrations (see wam.eval.offline):
    --episodes demonstrations per task are collected on held-out seeds, unless --data names a dataset."""
    shift: str = "none"
    """Evaluate under the suite's factors of variation, e.g. camera=medium or lighting=strong,distractors=weak
    (each direction drawn per episode from its seed); `wam eval --list-shifts [--suite S]` lists the factors and
    levels."""
    data: Path | None = None
    """Held-out demonstrations for --offline (a dataset written by `wam collect` with another --seed)."""
    ray: bool = False
    """Fan the episodes out to Ray workers on a local Ray cluster started for this run (same results as one
    process for the same seeds)."""
    ray_address: str | None = None
    """Fan the episodes out to an existing Ray cluster, e.g. ray://head:10001 or auto (see the README)."""
    ray_workers: Annotated[int | None, Ge(1)] = None
    """Ray workers (one model and one simulator per task each); default: the cluster's CPUs."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.suite is not None:
            check_suite_name(self.suite)
        if self.sweep and self.offline:
            raise OptionError("--sweep evaluates closed-loop operating points; drop --offline (or --sweep)")
        if self.sweep:
            point_configs(self)  # every operating point's options are checked before any point runs


# Sweepable dials: command-line name -> (EvalConfig field, DeploymentConfig field?, parser).
_FLAG = {"true": True, "false": False}
DIALS: dict[str, tuple[str, bool, Any]] = {
    "inference-steps": ("inference_steps", False, int),
    "future": ("future", False, str),
    "future-horizon": ("future_horizon", False, int),
    "n-action-steps": ("n_action_steps", True, int),
    "deployment": ("deployment", True, str),
    "ensemble": ("ensemble", True, float),
    "surprise": ("surprise", True, float),
    "decode": ("decode", True, lambda v: _FLAG[v.lower()]),
    "kv-cache": ("kv_cache", True, lambda v: _FLAG[v.lower()]),
    "adapt-steps": ("adapt_steps", True, int),
}


def parse_grid(entries: tuple[str, ...]) -> list[dict[str, Any]]:
    """``("inference-steps=2,5", "future=skip,predict")`` -> the 4 operating points of their product."""
    axes: list[tuple[str, list[Any]]] = []
    for entry in entries:
        name, sep, values = entry.partition("=")
        if not sep or not values or name not in DIALS:
            raise OptionError(f"--sweep entry {entry!r} must read DIAL=V1,V2,... with DIAL one of {', '.join(DIALS)}")
        if name in dict(axes):
            raise OptionError(f"--sweep names the dial {name!r} twice; give all its values in one entry")
        try:
            axes.append((name, [DIALS[name][2](v.strip()) for v in values.split(",")]))
        except (ValueError, KeyError):
            raise OptionError(f"--sweep {entry!r}: a value is not a valid {name} (e.g. {name}=2,5)") from None
    return [dict(zip([n for n, _ in axes], combo)) for combo in itertools.product(*[v for _, v in axes])]


def point_name(point: dict[str, Any]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items()) or "default"


def point_configs(cfg) -> list[tuple[dict[str, Any], str, Any]]:
    """Every operating point of ``cfg.sweep`` (an ``EvalConfig``'s) with its name and its own ``EvalConfig``; building
    them checks each dial value against the bounds of its option (``wam.options``)."""
    points = []
    for point in parse_grid(cfg.sweep):
        name = point_name(point)
        deploy = {DIALS[k][0]: v for k, v in point.items() if DIALS[k][1]}
        direct = {DIALS[k][0]: v for k, v in point.items() if not DIALS[k][1]}
        try:
            point_cfg = replace(cfg, sweep=(), out=Path(cfg.out) / "points" / name,
                                deploy=replace(cfg.deploy, **deploy), **direct)
        except OptionError as e:
            raise OptionError(f"--sweep point {name}: {e}") from None
        points.append((point, name, point_cfg))
    return points
