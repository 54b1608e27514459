"""``wam bench``: WAM-Bench. Train every selected preset on one task set, evaluate each closed-loop and with the
offline screens, and write the leaderboard (JSON) and the accuracy-at-budget report (HTML).

Every stage writes its output and is skipped when that output exists, so a bench runs across several sittings
and a finished preset is never redone. Layout under ``--out``::

    data/                    demonstrations, one multi-task collection shared by every preset
    heldout/                 held-out demonstrations (other seeds) for the offline screens
    data+<recipes>/, video-<n>x/  the demonstrations of recipes that collect their own, and action-free video
    <preset>/run/            `wam train` output: model/, train_log.jsonl, train_summary.json
    <preset>/eval/<task>/    `wam eval` output per task: eval_info.json, videos/
    <preset>/offline/        offline_info.json
    <preset>/sweep/          the fidelity-latency sweep (for --sweep-presets), resumable point by point
    <preset>/properties/     properties.json (the five properties), the dream, and evaluations under shifts
    <preset>/timing.json     latency measured in the last timing pass (see below)

Under ``--protocol`` (``wam.eval.protocols``) each group has that layout under ``<group>/``, with one folder per
training seed inside each preset's (``<group>/<preset>/seed-<s>/run/``, ``eval/``, ``offline/``, ``timing.json``)
and the scripted expert's success on the evaluated starts in ``<group>/expert.json``; there are no sweeps or
property probes. Each finished seed run is recorded beside the leaderboard as well, in
``<results>/records/<group>/<preset>/seed-<s>.json.gz`` (what its row is computed from, not the model), so the
benchmark can be rebuilt and extended where ``--out`` is gone: another machine, a fresh clone. A protocol with one
model per task puts each task's cell under ``<group>/<task>/`` and its records under ``<preset>/<task>/``.

Success comes from the closed-loop evaluations, whenever they ran. Latency does not: a call timed while other jobs
held the cores can be many times slower, so every invocation re-times each preset the same way (single-thread
calls in a short closed-loop run, after a warm-up), one preset after another, and records the load average. The
leaderboard's latency columns, the Pareto front and the central claim use those timings. Under ``--protocol`` an
entry is timed on each group's first cell as soon as that cell's run is evaluated (the bench does one thing at a
time), so its record is whole even where the bench stops before its end; a record keeps its entry's timing, and a
later invocation (the next preset added, a re-run) uses it instead of timing the entry again, beside whatever else
now runs on the machine; ``--retime`` measures every entry anew in a pass at the end.

The leaderboard and report go to ``--results`` (``leaderboard.json``, ``report.html`` and its figures and videos).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from annotated_types import Ge

from wam.compute import cpu_threads, in_processes, resolve_device
from wam.couplings.planners import PlannerOverrides
from wam.data.collect import EVAL_SEED_BASE, HELDOUT_SEED_BASE, VIDEO_SEED_BASE, CollectConfig, run_collect
from wam.deployment import DeploymentConfig, make_policy
from wam.envs import DEFAULT_SUITE, Suite, check_suite_name, get_suite, resolve_tasks
from wam.envs.variation import LEVELS, MIDDLE, NONE
from wam.eval import run_eval
from wam.eval.budget import machine_info
from wam.eval.config import EvalConfig
from wam.eval.leaderboard import (
    SeedRun,
    central_claim,
    joined_task_runs,
    leaderboard_row,
    pareto_front,
    protocol_row,
    screen_correlations,
    shift_summary,
)
from wam.eval.protocols import get_protocol
from wam.io import atomic_write_bytes, atomic_write_json, config_dict
from wam.model import ModelConfig, WorldActionModel
from wam.options import CheckedOptions, OptionError
from wam.presets.models import PRESETS
from wam.presets.recipes import (
    RECIPES,
    SEPARATOR,
    changes_collection,
    collect_image_size,
    collect_shift,
    collect_suite,
    deploy_overrides,
    model_overrides,
    parse_entry,
    planner_overrides,
    recipe_inference_steps,
    trained_entry,
    training_steps,
    video_curriculum,
    video_options,
    video_recipe,
)
from wam.train.loop import TrainConfig, model_config, train, video_refusal

QUICK = dict(tasks="quick", demos=5, episodes=2, steps=20, max_steps=60,
             offline_demos=1, shift_tasks=1, shift_episodes=1, sweep_episodes=1, checkpoint_every=10,
             timing_calls=10)
"""The smoke-test scale of --quick: the suite's quick tasks (MetaWorld: two easy ones), a few demonstrations,
episodes and training steps."""


def entry_refusal(entry: str, suite: Suite, tasks: list[str]) -> str | None:
    """Why an entry's recipes ask for a model its preset cannot be (an image size its substrate cannot take), video
    it cannot learn from, a deployment it cannot deploy, a search it does not make or sampler steps it does not take
    (None when none of them), found from the design before anything is collected or trained: a fresh model of the
    preset on the suite's vision track at the recipes' image size."""
    name, recipes = parse_entry(entry)
    if not recipes:
        return None
    features = suite.features("vision", collect_image_size(recipes) or suite.default_image_size)
    try:
        model = WorldActionModel(model_config(name, features, tasks, suite, **model_overrides(recipes)))
        plain = model_config(name, features, tasks, suite)
        for recipe in recipes:
            if recipe.model and all(getattr(plain, k) == v for k, v in recipe.model.items()):
                return f"recipe {recipe.name} changes nothing of preset {name}, which already has {recipe.model}"
        curriculum = video_curriculum(recipes)
        why = video_refusal(model, curriculum) if curriculum is not None else None
        if why is not None:
            return f"preset {name} {why}"
        deploy = deploy_overrides(recipes)
        if deploy:
            make_policy(model, DeploymentConfig(**deploy))
        planner = planner_overrides(recipes)
        if planner:
            model.inference(planner=PlannerOverrides(**planner).apply(model.config.planner))
        steps = recipe_inference_steps(recipes)
        if steps is not None:
            model.inference(steps)
    except ValueError as e:
        return str(e)
    return None


@dataclass(frozen=True)
class Cell:
    """Where one preset's bench work for one task set and training seed lives: the shared demonstrations, the
    held-out ones for the offline screens, and the preset's own folder (run/, eval/<task>/, offline/, ...)."""

    tasks: str
    data: Path
    heldout: Path
    root: Path
    """Folder under which each preset's folder is ``preset_dir(preset)``."""
    seed: int = 0
    group: str | None = None
    """The protocol group the cell evaluates; None for WAM-Bench's one cell, whose preset folders carry no seed."""
    task_model: bool = False
    """Whether the cell holds the model of its one task within the group (a protocol with one model per task): its
    folder and records sit under the task's name."""

    @property
    def name(self) -> str:
        """The group, or under one model per task the group and task (``hard/push-v3``); WAM-Bench's cell: its tasks."""
        if self.group is None:
            return self.tasks
        return f"{self.group}/{self.tasks}" if self.task_model else self.group

    def preset_dir(self, preset: str) -> Path:
        return self.root / preset if self.group is None else self.root / preset / f"seed-{self.seed}"

    def run_dir(self, entry: str) -> Path:
        """The trained run an entry evaluates: its own, or for deployment-only recipes the entry's without them."""
        return self.preset_dir(trained_entry(entry)) / "run"


@dataclass
class BenchConfig(CheckedOptions):
    """Train the presets on a task set, evaluate each closed-loop, and write the leaderboard and HTML report."""

    presets: tuple[str, ...] = ()
    """Presets to run (docs/presets.md); default: all of them."""
    protocol: str | None = None
    """A published evaluation protocol (``wam.eval.protocols``: 10-demos, 10-demos-per-task, mt50, generalization)
    instead of --tasks: it fixes the suite, demonstrations, episodes, episode cap and training steps, trains one
    multi-task model per group (or one model per task) and training seed, and reports each group beside the
    published figures. Default: WAM-Bench on --tasks."""
    groups: tuple[str, ...] = ()
    """The protocol's groups to run, e.g. ``hard very-hard``; default: all of them."""
    seeds: tuple[Annotated[int, Ge(0)], ...] = ()
    """Training seeds per group and preset under --protocol; default: the protocol's (10-demos: 0 1 2)."""
    headline: tuple[str, ...] | None = None
    """Under --protocol: the entries (among --presets) trained at every seed of --seeds, the protocol's headline
    rows; the others run at the first seed only (``--headline`` naming none: every entry at the first seed).
    Default: every entry at every seed."""
    suite: str = DEFAULT_SUITE
    """Simulator suite (metaworld, metaworld-lerobot, metaworld-wrist, pusht; see docs/suites.md)."""
    tasks: str = "wam-bench"
    """Comma-separated tasks or groups of --suite (vision track); default: the suite's wam-bench group (MetaWorld:
    the 8 tasks of WAM-Bench; PushT: pusht)."""
    demos: Annotated[int | None, Ge(1)] = None
    """Demonstrations per task; default: 50, or the protocol's."""
    episodes: Annotated[int | None, Ge(1)] = None
    """Evaluation episodes per task, on seeds disjoint from the demonstrations; default: 50, or the protocol's."""
    steps: Annotated[int | None, Ge(1)] = None
    """Training steps per preset; default: 5000, or the protocol's."""
    batch_size: Annotated[int, Ge(1)] = 64
    max_steps: Annotated[int | None, Ge(1)] = None
    """Evaluation episode cap in control steps; default: 300 (the scripted demonstrations of the benchmark tasks
    succeed within 114), or the protocol's."""
    offline_demos: Annotated[int | None, Ge(1)] = None
    """Held-out demonstrations per task for the offline screens; default: 5, or the protocol's."""
    video: Annotated[int, Ge(0)] = 1
    """Rollout videos per task and preset (the report shows the first task's)."""
    shift_tasks: Annotated[int, Ge(0)] = 2
    """Generalization probe: the first this many tasks are also evaluated under each declared shift."""
    shift_episodes: Annotated[int, Ge(1)] = 10
    """Generalization probe: episodes per task and shift (the first seeds of the main evaluation)."""
    shift_factors: tuple[str, ...] = ()
    """Under a protocol with the generalization grid (--protocol generalization): the factors it evaluates, e.g.
    camera lighting; default: all the suite's (wam eval --list-shifts)."""
    shift_levels: tuple[str, ...] = ()
    """Under the generalization grid: the levels each factor is evaluated at, e.g. medium (the level the goals are
    stated at; a third of the cells); default: weak medium strong."""
    sweep_presets: tuple[str, ...] = ("fast-wam", "unipi", "gigaworld-policy")
    """Presets (among those run) whose fidelity-latency curve the report shows: sampler steps 2/5/10, and the future
    skipped or predicted where the preset can skip it, on the first task."""
    sweep_episodes: Annotated[int, Ge(1)] = 10
    quick: bool = False
    """Smoke-test scale: overrides tasks (not a protocol's groups), demos, episodes, steps, max_steps and
    offline_demos (see QUICK)."""
    out: Path = Path("outputs/bench")
    """Data, runs and evaluations, reused by a re-run."""
    results: Path = Path("results/bench")
    """Where the leaderboard and the report go."""
    workers: Annotated[int, Ge(1)] = 2
    """Parallel collection workers."""
    device: str = "auto"
    timing_calls: Annotated[int, Ge(1)] = 200
    """Model calls timed per preset (after a warm-up) for the latency columns; re-measured on every run, except under
    --protocol, where an entry keeps the timing its record holds (see --retime)."""
    retime: bool = False
    """Under --protocol: time every entry whose run is under --out again, instead of keeping the timing its record
    holds from an earlier run of the bench (so that every latency comes from one pass, under one load)."""
    checkpoint_every: Annotated[int, Ge(1)] = 500
    """Checkpoint training every N steps; an interrupted bench resumes the preset it was training from there."""
    train_only: bool = False
    """Collect the data and train every run this bench evaluates (each entry at its seeds, with its recipes, under
    --out), --train-jobs at a time, then stop: the accelerator part of a bench whose evaluation runs on another
    machine. The same bench without it then finds the runs trained and evaluates them."""
    train_jobs: Annotated[int, Ge(1)] = 1
    """With --train-only: runs trained at once, each in its own process with its log in its preset folder
    (train.log). At these model sizes a step on a GPU is bound by kernel launches, so several runs share one well;
    on CPUs pass --threads 1."""
    threads: Annotated[int | None, Ge(1)] = None
    """CPU threads for training (default: one per core; 1 when several benches share the machine). Evaluation
    calls always use one thread (see `wam eval --threads`)."""
    envs: Annotated[int, Ge(1)] = 4
    """Environments each closed-loop evaluation steps in lockstep with batched model calls (see `wam eval --envs`);
    the latency columns come from a separate one-at-a-time timing pass either way."""
    ray: bool = False
    """Fan the episodes of each closed-loop evaluation (the tasks, the shift probes, the sweeps) out to Ray workers
    on a local Ray cluster: same outcomes as one process; the timing pass stays in this process."""
    ray_address: str | None = None
    """Fan the evaluations out to an existing Ray cluster instead (see `wam eval --ray-address`)."""
    ray_workers: Annotated[int | None, Ge(1)] = None
    """Ray workers per evaluation; default: the cluster's CPUs."""
    eval_jobs: Annotated[int, Ge(1)] = 1
    """Evaluations run at once: an entry's closed-loop evaluations (one per task) and its offline screens, each in its
    own process with its log in its folder (eval.log). A model call takes one thread, so on a machine with C cores C
    of them fill it; each task keeps its lockstep environments and batched calls (--envs), which Ray's single
    episodes give up. Same outcomes as one at a time; the timing pass stays alone."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_suite_name(self.suite)

    def resolved(self) -> BenchConfig:
        """This config with --quick applied, the tasks named and the preset list filled in; unknown presets and
        tasks are refused."""
        unknown = [p for p in self.presets if p.split(SEPARATOR)[0] not in PRESETS]
        if unknown:
            raise ValueError(f"unknown preset(s) {', '.join(unknown)}; choose from: {', '.join(PRESETS)} (with "
                             f"recipes: PRESET+RECIPE, recipes {', '.join(RECIPES)})")
        fields = {**asdict(self), "presets": self.presets or tuple(PRESETS)}
        if self.protocol is None and (self.groups or self.seeds or self.headline is not None):
            raise OptionError("--groups, --seeds and --headline choose among a protocol's groups and training seeds; "
                              "pass --protocol too (e.g. --protocol 10-demos)")
        if self.train_jobs > 1 and not self.train_only:
            raise OptionError("--train-jobs sets how many runs --train-only trains at once; pass --train-only too")
        if self.eval_jobs > 1 and (self.ray or self.ray_address):
            raise OptionError("--eval-jobs runs evaluations in processes on this machine and --ray spreads their "
                              "episodes over Ray workers: choose one")
        unknown = [entry for entry in self.headline or () if entry not in fields["presets"]]
        if unknown:
            raise OptionError(f"--headline names {', '.join(unknown)}, not among the entries run "
                              f"({', '.join(fields['presets'])})")
        scale = WAM_BENCH_SCALE
        if self.protocol is not None:
            protocol = get_protocol(self.protocol)
            if self.suite not in (DEFAULT_SUITE, protocol.suite):
                raise OptionError(f"protocol {protocol.name!r} runs in the {protocol.suite} suite, not {self.suite}")
            if self.tasks != BenchConfig.tasks:
                raise OptionError(f"--tasks chooses WAM-Bench's tasks; protocol {protocol.name!r} evaluates whole "
                                  f"groups: pass --groups (from {', '.join(protocol.groups)})")
            scale = protocol.scale()
            groups = protocol.check_groups(self.groups) or protocol.groups
            fields.update(suite=protocol.suite, tasks=",".join(f"{protocol.suite}/{g}" for g in groups),
                          groups=groups, seeds=self.seeds or protocol.seeds)
        if self.headline == ():  # no headline entry: every entry at the first seed, as the config then says
            fields.update(seeds=fields["seeds"][:1], headline=None)
        fields.update({k: v for k, v in scale.items() if fields[k] is None})  # what was given stays
        if self.quick:  # a protocol's groups stay; its scale does not
            fields.update({k: v for k, v in QUICK.items() if not (k == "tasks" and self.protocol is not None)})
        suite, tasks = resolve_tasks(fields["tasks"], fields["suite"])
        for entry in fields["presets"]:  # a recipe's demonstrations must be collectable on these tasks
            recipes = parse_entry(entry)[1]
            variant = get_suite(collect_suite(recipes, suite.name))
            if variant.name != suite.name and not set(tasks) <= set(variant.tasks()):
                raise OptionError(f"{entry}: its demonstrations come from the {variant.name} suite, which lacks "
                                  f"the {suite.name} tasks benched here")
            variant.check_shift(collect_shift(recipes), tasks, where_applicable=True)
            why = entry_refusal(entry, variant, tasks)
            if why is not None:
                raise OptionError(f"{entry}: {why}")
        unknown = [f for f in self.shift_factors if f not in suite.factors]
        if unknown:
            raise OptionError(f"unknown factor(s) {', '.join(unknown)} for --shift-factors; the {suite.name} suite has: "
                              f"{', '.join(suite.factors) or 'none'}")
        unknown = [level for level in self.shift_levels if level not in LEVELS]
        if unknown:
            raise OptionError(f"unknown level(s) {', '.join(unknown)} for --shift-levels; the levels are "
                              f"{', '.join(LEVELS)}")
        return BenchConfig(**{**fields, "suite": suite.name, "tasks": ",".join(tasks)})

    def seeds_of(self, entry: str) -> tuple[int, ...]:
        """The training seeds ``entry`` runs at under a protocol: all of --seeds for a headline entry (or for every
        entry where --headline is not given), the first alone for the others."""
        return self.seeds if self.headline is None or entry in self.headline else self.seeds[:1]

    def entries_of(self, cell: Cell) -> list[str]:
        """The entries a cell trains and evaluates: every preset, or under a protocol those run at the cell's seed."""
        return [e for e in self.presets if self.protocol is None or cell.seed in self.seeds_of(e)]

    def cells(self) -> list[Cell]:
        """The (task set, seed) cells of a resolved config: WAM-Bench's one, or a protocol's group x seed ones (group
        x seed x task ones where the protocol trains one model per task)."""
        if self.protocol is None:
            return [Cell(self.tasks, self.out / "data", self.out / "heldout", self.out)]
        per_task = get_protocol(self.protocol).model_per_task
        cells = []
        for group in self.groups:
            tasks = resolve_tasks(f"{self.suite}/{group}")[1]
            # (tasks, folder) of each model: the group's one, or each task's in a folder of its own within the group's
            models = [(task, self.out / group / task) for task in tasks] if per_task \
                else [(",".join(tasks), self.out / group)]
            cells += [Cell(model_tasks, root / "data", root / "heldout", root, seed, group, task_model=per_task)
                      for seed in self.seeds for model_tasks, root in models]
        return cells

    def timed_cells(self) -> list[Cell]:
        """Each group's first cell (WAM-Bench: its one), whose runs the bench times: every entry runs its first seed."""
        firsts: dict[str | None, Cell] = {}
        for cell in self.cells():
            firsts.setdefault(cell.group, cell)
        return list(firsts.values())


SCREENS = "offline screens"  # evaluate_preset's name for them beside the tasks' (no task is named so)
WAM_BENCH_SCALE = dict(demos=50, episodes=50, steps=5000, max_steps=300, offline_demos=5)
"""WAM-Bench's scale where the command line leaves it open."""


def _train_settings(cfg: BenchConfig, preset: str, cell: Cell) -> dict[str, Any]:
    recipes = parse_entry(preset)[1]
    return {"preset": preset, "steps": training_steps(recipes, cfg.steps), "batch_size": cfg.batch_size,
            "tasks": cell.tasks, "demos": cfg.demos, "seed": cell.seed,
            **({"recipes": [r.name for r in recipes]} if recipes else {})}


@dataclass(frozen=True)
class Collection:
    """Demonstrations a bench collects: where, in which suite, under which shift and at which image size."""

    path: Path
    suite: str
    shift: str = "none"
    image_size: int | None = None
    """None: the suite's default size."""
    episodes: int | None = None
    """Action-free video: its episodes per task; None: demonstrations, as many as the bench's --demos."""


def entry_data(cell: Cell, entry: str, suite: str) -> Collection:
    """The demonstrations a bench entry (``preset[+recipe...]``) trains on: the cell's own (in the bench's
    ``suite``), or a collection of the same seeds under its recipes' randomized factors, in their variant of the
    suite or at their image size."""
    recipes = tuple(r for r in parse_entry(entry)[1] if changes_collection(r))
    if not recipes:
        return Collection(cell.data, suite)
    return Collection(cell.data.with_name("data+" + SEPARATOR.join(r.name for r in recipes)),
                      collect_suite(recipes, suite), collect_shift(recipes), collect_image_size(recipes))


def entry_heldout(cell: Cell, entry: str, suite: str) -> Collection:
    """The held-out demonstrations an entry's offline screens read: the cell's, or the same seeds as its model
    reads them, in the suite variant its recipes train in (its cameras) and at their image size."""
    variant, size, parts = _model_variant(entry, suite)
    path = cell.heldout.with_name(SEPARATOR.join(["heldout", *parts])) if parts else cell.heldout
    return Collection(path, variant, image_size=size)


def _model_variant(entry: str, suite: str) -> tuple[str, int | None, list[str]]:
    """The suite variant and image size an entry's model reads, and the name parts that set them apart from the
    bench's (none where it reads the bench's own)."""
    recipes = parse_entry(entry)[1]
    variant, size = collect_suite(recipes, suite), collect_image_size(recipes)
    return variant, size, ([variant] if variant != suite else []) + ([f"image-{size}"] if size is not None else [])


def entry_video(cell: Cell, entry: str, suite: str, demos: int) -> Collection | None:
    """The action-free video an entry's recipes add to training (None without any): ``video_per_demo`` x ``demos``
    expert episodes of each of the cell's tasks from ``VIDEO_SEED_BASE``, under the recipe's ``video_shift``, in the
    suite variant and at the image size of the entry's demonstrations. Unshifted video is shared by the recipes
    that add as much (``video-<n>x``: the scenes as the bench evaluates them); shifted video is its recipe's own."""
    video = video_recipe(parse_entry(entry)[1])
    if video is None:
        return None
    variant, size, parts = _model_variant(entry, suite)
    name = f"video-{video.video_per_demo}x" if video.video_shift == "none" else video.name
    return Collection(cell.data.with_name(SEPARATOR.join([name, *parts])), variant, shift=video.video_shift,
                      image_size=size, episodes=video.video_per_demo * demos)


def train_preset(cfg: BenchConfig, entry: str, cell: Cell) -> dict[str, Any]:
    """Train ``entry`` on the cell's data unless a finished run with the same settings exists (an entry whose
    recipes change only the deployment shares the run of the entry without them); returns its train summary."""
    preset = trained_entry(entry)
    folder = cell.preset_dir(preset)
    run = folder / "run"
    settings_path, summary_path = folder / "bench_train.json", run / "train_summary.json"
    settings = _train_settings(cfg, preset, cell)
    if summary_path.exists() and settings_path.exists():
        done = {"seed": 0, **json.loads(settings_path.read_text())}  # benches before seeds trained with seed 0
        if done != settings:
            raise ValueError(f"{run} was trained with {done}, not {settings}; delete {folder} to retrain "
                             "it, or choose another --out")
        return json.loads(summary_path.read_text())
    name, recipes = parse_entry(preset)
    steps = training_steps(recipes, cfg.steps)
    video = entry_video(cell, preset, cfg.suite, cfg.demos)
    summary = train(TrainConfig(data=entry_data(cell, preset, cfg.suite).path, out=run, preset=name, steps=steps,
                                batch_size=cfg.batch_size, device=cfg.device, threads=cfg.threads,  # type: ignore[arg-type]
                                resume=True, save_every=cfg.checkpoint_every, keep_checkpoints=1, seed=cell.seed,
                                **({"video": (video.path,), **video_options(recipes, steps)} if video else {})),
                    **model_overrides(recipes))
    atomic_write_json(settings_path, settings)
    return summary


def train_bench(cfg: BenchConfig) -> list[Path]:
    """``--train-only``: every run the bench evaluates, collected for and trained as ``train_preset`` trains it,
    ``--train-jobs`` at a time; the runs a protocol's records already stand for are left out. Returns the runs."""
    cfg = cfg.resolved()
    jobs: dict[Path, tuple[str, Cell]] = {}  # by run: entries that differ only in deployment share one
    timed = cfg.timed_cells()
    for cell in cfg.cells():
        first = cell in timed
        entries = [entry for entry in cfg.entries_of(cell) if cfg.protocol is None
                   or recorded_run(cfg, entry, cell, timed=first) is None]
        collect_cell(cfg, cell, entries)
        for entry in entries:
            jobs.setdefault(cell.run_dir(entry), (trained_entry(entry), cell))
    if cfg.train_jobs == 1:
        for run, (entry, cell) in jobs.items():
            print(f"--- training {entry} into {run}", flush=True)
            train_preset(cfg, entry, cell)
    else:
        in_processes(train_preset, {str(run): (cell.preset_dir(entry) / "train.log", (cfg, entry, cell))
                                    for run, (entry, cell) in jobs.items()}, cfg.train_jobs, done="trained")
    return list(jobs)


def kept_evaluation(ecfg: EvalConfig) -> dict[str, Any] | None:
    """What ``ecfg.out`` already holds of ``ecfg``: its offline screens, or an evaluation of the same episodes, cap and
    shift; None if nothing."""
    if ecfg.offline:
        path = Path(ecfg.out) / "offline_info.json"
        return json.loads(path.read_text()) if path.exists() else None
    path = Path(ecfg.out) / "eval_info.json"
    if path.exists():
        info = json.loads(path.read_text())
        done = info["config"]
        if (done["episodes"], done["max_steps"], done.get("shift", "none")) == (ecfg.episodes, ecfg.max_steps,
                                                                                ecfg.shift):
            return info
    return None


def _evaluate(ecfg: EvalConfig) -> dict[str, Any]:
    """``run_eval``, unless ``ecfg.out`` already holds its result (``kept_evaluation``)."""
    kept = kept_evaluation(ecfg)
    return run_eval(ecfg) if kept is None else kept


def _eval_config(cfg: BenchConfig, cell: Cell, entry: str, tasks: str, episodes: int, out: Path,
                 **kwargs: Any) -> EvalConfig:
    """An evaluation of an entry's trained run, deployed as its recipes say, under the bench's episode cap, device
    and Ray settings."""
    recipes = parse_entry(entry)[1]
    return EvalConfig(run=cell.run_dir(entry), tasks=tasks, episodes=episodes, out=out, max_steps=cfg.max_steps,
                      device=cfg.device, ray=cfg.ray, ray_address=cfg.ray_address,  # type: ignore[arg-type]
                      ray_workers=cfg.ray_workers, envs=cfg.envs, time_alone=False,  # time_preset times it
                      deploy=DeploymentConfig(**deploy_overrides(recipes)),
                      planner=PlannerOverrides(**planner_overrides(recipes)),
                      inference_steps=recipe_inference_steps(recipes), **kwargs)


def _screen_config(cfg: BenchConfig, preset: str, cell: Cell) -> EvalConfig:
    """The offline screens of ``preset`` on the cell's held-out demonstrations."""
    return _eval_config(cfg, cell, preset, cell.tasks, cfg.offline_demos, cell.preset_dir(preset) / "offline",
                        offline=True, data=entry_heldout(cell, preset, cfg.suite).path)


def screen_preset(cfg: BenchConfig, preset: str, cell: Cell) -> dict[str, Any]:
    """The offline screens of ``preset`` alone (kept once computed)."""
    return _evaluate(_screen_config(cfg, preset, cell))


def evaluate_preset(cfg: BenchConfig, preset: str, cell: Cell) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Closed-loop evaluation of ``preset`` task by task and its offline screens on the cell's held-out
    demonstrations, ``--eval-jobs`` at a time, each kept once done; ``({task: eval_info}, offline_info)``."""
    folder = cell.preset_dir(preset)
    configs = {task: _eval_config(cfg, cell, preset, task, cfg.episodes, folder / "eval" / task, video=cfg.video)
               for task in cell.tasks.split(",")}
    configs[SCREENS] = _screen_config(cfg, preset, cell)
    results = {name: kept for name, ecfg in configs.items() if (kept := kept_evaluation(ecfg)) is not None}
    missing = {name: ecfg for name, ecfg in configs.items() if name not in results}
    if cfg.eval_jobs == 1 or len(missing) < 2:
        results.update({name: run_eval(ecfg) for name, ecfg in missing.items()})
    else:
        results.update(in_processes(run_eval, {name: (Path(ecfg.out) / "eval.log", (ecfg,))
                                               for name, ecfg in missing.items()}, cfg.eval_jobs, done="evaluated"))
    return {task: results[task] for task in configs if task != SCREENS}, results[SCREENS]


def sweep_preset(cfg: BenchConfig, preset: str, cell: Cell) -> dict[str, Any] | None:
    """The fidelity-latency sweep of ``preset`` on the first task; its plot, titled with the preset, goes into the
    results."""
    from wam.eval.sweep import plot_sweep

    p = PRESETS[parse_entry(preset)[0]]
    grid = []
    if ModelConfig(**p.config_fields()).denoises:
        grid.append("inference-steps=2,5,10")
    if p.fields.get("future_at_inference") == "skip":
        grid.append("future=skip,predict")
    if not grid:
        return None
    sweep = run_eval(_eval_config(cfg, cell, preset, cfg.tasks.split(",")[0], cfg.sweep_episodes,
                                  cfg.out / preset / "sweep", sweep=tuple(grid)))
    plot_sweep(sweep["points"], cfg.results / "sweeps" / preset / "sweep.png", preset)
    return sweep


def probe_preset(cfg: BenchConfig, preset: str, cell: Cell, evals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The five properties of ``preset`` (see wam.eval.properties), kept once computed."""
    from wam.data.lerobot import LeRobotDataset
    from wam.eval.properties import offline_properties, persistence

    out = cfg.out / preset / "properties"
    path = out / "properties.json"
    if path.exists():
        return json.loads(path.read_text())
    run, tasks = cell.run_dir(preset), cfg.tasks.split(",")
    probes: dict[str, Any] = offline_properties(run, LeRobotDataset.load(entry_heldout(cell, preset, cfg.suite).path))
    probes["persistence"] = persistence(run, tasks[0], out / "dream", cfg.device)
    probes["generalization"] = generalization_probe(cfg, cell, preset, tasks[:cfg.shift_tasks], evals, out)
    atomic_write_json(path, probes)
    return probes


def generalization_probe(cfg: BenchConfig, cell: Cell, preset: str, tasks: list[str],
                         evals: dict[str, dict[str, Any]], out: Path) -> dict[str, Any]:
    """Success under each of the suite's factors of variation at its middle level, on those of ``tasks`` it
    applies to, against the unshifted success of the main evaluation on the same seeds; ``relative`` is the mean
    shifted success over the unshifted (the generalization benchmark measures every level, wider)."""
    suite = get_suite(cfg.suite)
    unshifted = [e["success"] for t in tasks for e in evals[t]["per_episode"][:cfg.shift_episodes]]
    success, shifts = {"none": float(np.mean(unshifted))}, {}
    for name, factor in suite.factors.items():
        applies = [t for t in tasks if suite.factor_applies(name, t)]
        if applies != tasks:  # a factor that cannot shift every probed task would compare other tasks
            continue
        spec = f"{name}={MIDDLE}"
        info = _evaluate(_eval_config(cfg, cell, preset, ",".join(tasks), cfg.shift_episodes, out / f"shift-{name}",
                                      shift=spec))
        success[spec] = info["aggregated"]["pc_success"] / 100
        shifts[spec] = f"{factor.description}, {factor.levels[MIDDLE]}"
    shifted = [v for k, v in success.items() if k != "none"]
    relative = float(np.mean(shifted)) / success["none"] if shifted and success["none"] else None
    return {"success": success, "shifts": shifts, "tasks": tasks, "episodes": cfg.shift_episodes,
            "relative": relative}


WARMUP_CALLS = 3


def time_preset(cfg: BenchConfig, preset: str, cell: Cell) -> dict[str, Any]:
    """Time ``preset`` now: ``cfg.timing_calls`` single-thread model calls under its own deployment, in seeded
    closed-loop episodes of the benchmark tasks in turn, after ``WARMUP_CALLS`` untimed ones. Written to
    ``timing.json`` with the load average before and after, so a timing taken on a busy machine shows it."""
    import os

    from wam.eval.budget import latency_block
    from wam.eval.runner import EpisodeRunner
    from wam.eval.subject import load_for_eval

    folder = cell.preset_dir(preset)
    ecfg = _eval_config(cfg, cell, preset, cell.tasks, 1, folder / "timing")
    with cpu_threads(1):
        runner = EpisodeRunner(ecfg, *load_for_eval(ecfg, ecfg.run / "model"))
        load_before = os.getloadavg()
        latencies: list[float] = []
        calls, steps = [], []
        tasks = cell.tasks.split(",")
        j = 0
        while len(latencies) < WARMUP_CALLS + cfg.timing_calls:
            record = runner.episode(tasks[j % len(tasks)], j, EVAL_SEED_BASE + j)
            latencies += record["call_latencies"]
            calls.append(record["model_calls"])
            steps.append(record["steps"])
            j += 1
        runner.close()
        machine = machine_info(runner.model.device)  # with the timing's one thread
    timed = latencies[WARMUP_CALLS:]
    # Actions per timed call as in the episodes: total steps over total calls.
    actions = round(len(timed) * sum(steps) / max(sum(calls), 1))
    timing = {**latency_block(timed, actions, runner.policy.min_actions_per_call, runner.suite.control_hz, calls, steps),
              "episodes": j, "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
              "machine": machine}
    atomic_write_json(folder / "timing.json", timing)
    return timing


def board_evaluation(path: Path, step: int, row: dict[str, Any]) -> None:
    """A preset's closed-loop success, overall and per task, as TensorBoard scalars at its last training step,
    beside its training curves (``tensorboard --logdir BENCH_OUT``)."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(path, purge_step=step) as board:  # a re-run replaces, not repeats, the figures
        board.add_scalar("eval/success", row["success"], step)
        for task, success in row["per_task"].items():
            board.add_scalar(f"eval/success/{task}", success, step)


def collect_cell(cfg: BenchConfig, cell: Cell, entries: list[str]) -> None:
    """The cell's demonstrations, those of the recipes of ``entries`` (the same seeds, under the recipes'
    randomized factors or in their suite variant), their action-free video and the held-out demonstrations, also in
    each variant (resumable; nothing is recorded twice); nothing where no entry is to be measured."""
    if not entries:
        return
    plain = Collection(cell.data, cfg.suite)
    for data in dict.fromkeys([plain, *(entry_data(cell, entry, cfg.suite) for entry in entries)]):
        run_collect(CollectConfig(tasks=cell.tasks, suite=data.suite, episodes=cfg.demos, out=data.path,
                                  workers=cfg.workers, shift=data.shift, shift_where_applicable=True,
                                  image_size=data.image_size))
    videos = [video for entry in entries if (video := entry_video(cell, entry, cfg.suite, cfg.demos)) is not None]
    for video in dict.fromkeys(videos):  # the scripted expert's failed attempts are video all the same
        run_collect(CollectConfig(tasks=cell.tasks, suite=video.suite, episodes=video.episodes, out=video.path,
                                  workers=cfg.workers, seed=VIDEO_SEED_BASE, shift=video.shift,
                                  shift_where_applicable=True, image_size=video.image_size, no_actions=True,
                                  keep_failed=True))
    plain_heldout = Collection(cell.heldout, cfg.suite)
    for heldout in dict.fromkeys([plain_heldout, *(entry_heldout(cell, e, cfg.suite) for e in entries)]):
        run_collect(CollectConfig(tasks=cell.tasks, suite=heldout.suite, episodes=cfg.offline_demos, out=heldout.path,
                                  workers=cfg.workers, seed=HELDOUT_SEED_BASE, image_size=heldout.image_size))


def _command() -> str:
    return "wam bench " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "run_bench"


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every stage not yet done and write ``leaderboard.json`` and ``report.html``; returns the leaderboard.
    Under ``--protocol``, see ``run_protocol``."""
    from wam.eval.html import write_report

    cfg = cfg.resolved()
    if cfg.train_only:
        raise OptionError("--train-only trains without evaluating: that is train_bench's job, not run_bench's")
    if cfg.protocol is not None:
        return run_protocol(cfg)
    start = time.perf_counter()
    (cell,) = cfg.cells()
    collect_cell(cfg, cell, list(cfg.presets))
    rows, curves, pending = [], {}, []
    for preset in cfg.presets:
        print(f"--- {preset}", flush=True)
        summary = train_preset(cfg, preset, cell)
        evals, offline = evaluate_preset(cfg, preset, cell)
        properties = probe_preset(cfg, preset, cell, evals)
        sweep = sweep_preset(cfg, preset, cell) if preset in cfg.sweep_presets else None
        pending.append((preset, summary, evals, offline, properties, sweep))
    print("--- timing every preset, one after another", flush=True)
    for preset, summary, evals, offline, properties, sweep in pending:
        rows.append({**leaderboard_row(preset, summary, evals, offline, properties, time_preset(cfg, preset, cell)),
                     "sweep": None if sweep is None else sweep["points"]})
        deployed = "".join(SEPARATOR + r.name for r in parse_entry(preset)[1] if r.deployment_only)
        board_evaluation(cell.run_dir(preset) / "tensorboard" / f"eval{deployed}", summary["steps"], rows[-1])
        curves[preset] = [json.loads(line) for line in (cell.run_dir(preset) / "train_log.jsonl").open()]
    board = {
        "command": _command(), "config": config_dict(cfg), "machine": machine_info(resolve_device(cfg.device)),
        "suite": cfg.suite, "tasks": cfg.tasks.split(","),
        "rows": sorted(rows, key=lambda r: -r["success"]), "screen_correlations": screen_correlations(rows),
        "pareto_front": pareto_front(rows), "central_claim": central_claim(rows),
        "time_s": time.perf_counter() - start, "results": str(cfg.results),
    }
    cfg.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.results / "leaderboard.json", board)
    write_report(board, curves, cfg.out, cfg.results)
    return board


def run_protocol(cfg: BenchConfig) -> dict[str, Any]:
    """A published protocol (``wam.eval.protocols``): for each group, seed by seed, every preset trained on the
    group's demonstrations, evaluated closed-loop task by task and screened offline; then each preset timed, its
    seeds aggregated into one row per group, and the groups written beside the published figures to
    ``leaderboard.json`` and ``report.html``. Every stage is kept once done, as in WAM-Bench."""
    from wam.eval.html import write_protocol_report

    start = time.perf_counter()
    protocol = get_protocol(cfg.protocol)
    runs: dict[tuple[str, str], list[SeedRun]] = {}
    recorded_timing: dict[tuple[str, str], dict[str, Any]] = {}  # of the entries whose runs are gone
    timed = cfg.timed_cells()
    for cell in cfg.cells():
        first = cell in timed
        entries = cfg.entries_of(cell)
        recorded = {entry: kept for entry in entries
                    if (kept := recorded_run(cfg, entry, cell, timed=first)) is not None}
        collect_cell(cfg, cell, [entry for entry in entries if entry not in recorded])
        for preset in entries:
            print(f"--- {protocol.name} {cell.name} seed {cell.seed}: {preset}", flush=True)
            if preset in recorded:
                run, timing = recorded[preset]
                print(f"    taken from {record_path(cfg, preset, cell)}: its run is not under {cfg.out}", flush=True)
                if timing is not None and first:
                    recorded_timing[cell.group, preset] = timing
            else:
                summary = train_preset(cfg, preset, cell)
                evals, offline = evaluate_preset(cfg, preset, cell)
                shifts = shift_grid(cfg, preset, cell, evals, protocol.shift_cell_episodes) \
                    if protocol.shift_cell_episodes else {}
                run = SeedRun(cell.seed, summary, evals, offline, shifts)
                timing = None  # a record keeps its earlier timing
                if first and not cfg.retime and (read_record(cfg, preset, cell) or {}).get("timing") is None:
                    timing = time_preset(cfg, preset, cell)  # now: a bench stopped before its end leaves it whole
                write_record(cfg, preset, cell, run, timing)
            runs.setdefault((cell.group, preset), []).append(run)
    print("--- timing every preset, one after another (an entry keeps the timing its record holds"
          + (" only where its run is gone)" if cfg.retime else "; --retime measures again)"), flush=True)
    board_groups = {}
    for cell in timed:
        group = cell.group
        rows = []
        for preset in cfg.presets:
            timing = recorded_timing.get((group, preset))
            if timing is None and not cfg.retime:
                timing = (read_record(cfg, preset, cell) or {}).get("timing")
            if timing is None:
                timing = time_preset(cfg, preset, cell)
                write_record(cfg, preset, cell, runs[group, preset][0], timing)
            seed_runs = runs[group, preset]
            rows.append(protocol_row(preset, joined_task_runs(seed_runs) if cell.task_model else seed_runs, timing))
        tasks = resolve_tasks(f"{cfg.suite}/{group}")[1]
        board_groups[group] = {
            "tasks": tasks, "rows": sorted(rows, key=lambda r: -r["success"]),
            "free_goals": free_goals(get_suite(cfg.suite), tasks),
            "expert": expert_success(cfg, cfg.out / group, tasks),
            "references": [{"system": ref.system, "success": ref.success[group] / 100, "source": ref.source}
                           for ref in protocol.references if group in ref.success],
            "screen_correlations": screen_correlations(rows), "pareto_front": pareto_front(rows),
            "central_claim": central_claim(rows), "shift_summary": shift_summary(rows),
        }
    board = {
        "command": _command(), "config": config_dict(cfg), "machine": machine_info(resolve_device(cfg.device)),
        "suite": cfg.suite, "protocol": {"name": protocol.name, "description": protocol.description,
                                         "differences": protocol.differences, "seeds": list(cfg.seeds),
                                         "headline": list(cfg.headline or ()),
                                         "deviations": protocol.deviations(config_dict(cfg))},
        "groups": board_groups, "failure_tags": get_suite(cfg.suite).failure_tags,
        "time_s": time.perf_counter() - start, "results": str(cfg.results),
    }
    cfg.results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.results / "leaderboard.json", board)
    write_protocol_report(board, cfg.results)
    return board


def free_goals(suite: Suite, tasks: list[str]) -> dict[str, Any]:
    """The tasks whose goal is placed at random with no body placed with it, each with the pixels the simulator's goal
    marker covers there at the suite's image size: all an image policy has to read the goal from."""
    size = suite.default_image_size
    return {"image_size": size, "marker_pixels": {t: suite.goal_marker_pixels(t, size) for t in tasks
                                                  if suite.free_goal(t)}}


def expert_success(cfg: BenchConfig, folder: Path, tasks: list[str]) -> dict[str, Any]:
    """The suite's scripted expert on exactly the starts the presets are evaluated on (the evaluation seeds, the
    bench's episode cap), per task: the ceiling that imitation aims at. State track (MetaWorld's experts read the
    state on either track, and act the same). Kept in ``folder/expert.json`` (the group's) once measured."""
    outcomes = expert_outcomes(cfg, folder / "expert.json", tasks, cfg.episodes, NONE)
    per_task = {task: float(np.mean(o)) for task, o in outcomes.items()}
    return {"success": float(np.mean(list(per_task.values()))), "per_task": per_task,
            "episodes": cfg.episodes, "max_steps": cfg.max_steps}


def expert_outcomes(cfg: BenchConfig, path: Path, tasks: list[str], per_task: int,
                    shift: str) -> dict[str, list[bool]]:
    """The suite's scripted expert on the first ``per_task`` seeds of the main evaluation of each task (the starts
    the presets are evaluated on, at the bench's episode cap) under ``shift``, per task; state track (MetaWorld's
    experts read the state on either track, and act the same). Kept in ``path`` once measured: it is the same for
    every entry."""
    if path.exists():
        done = json.loads(path.read_text())
        if (done.get("shift"), done.get("episodes_per_task"), done.get("max_steps")) == (
                shift, per_task, cfg.max_steps) and set(tasks) <= set(done["per_task"]):
            return {task: done["per_task"][task] for task in tasks}
    seeds = [EVAL_SEED_BASE + j for j in range(per_task)]
    suite = get_suite(cfg.suite)
    outcomes = {task: suite.expert_successes(task, seeds, "state", cfg.max_steps, shift=shift) for task in tasks}
    atomic_write_json(path, {"shift": shift, "episodes_per_task": per_task, "max_steps": cfg.max_steps,
                             "per_task": outcomes})
    return outcomes


RECORDED_EVAL = ("aggregated", "per_episode", "failures", "budget", "model")
"""What a record keeps of each ``eval_info.json``: what the leaderboard reads, without the run's paths."""


def record_path(cfg: BenchConfig, entry: str, cell: Cell) -> Path:
    """Where the finished seed run of ``entry`` in ``cell`` is recorded beside the leaderboard."""
    folder = cfg.results / "records" / str(cell.group) / entry
    return (folder / cell.tasks if cell.task_model else folder) / f"seed-{cell.seed}.json.gz"


def record_settings(cfg: BenchConfig, entry: str, cell: Cell) -> dict[str, Any]:
    """What a record's figures depend on: the training settings and the evaluation's scale."""
    return {"train": _train_settings(cfg, trained_entry(entry), cell), "episodes": cfg.episodes,
            "max_steps": cfg.max_steps, "offline_demos": cfg.offline_demos}


def unreadable_record(path: Path, error: Exception) -> ValueError:
    """The one error for a record that cannot be read, whether its bytes or its contents are damaged."""
    return ValueError(f"{path} is not a readable record ({type(error).__name__}: {error}); delete it to measure anew")


def load_record(path: Path) -> dict[str, Any]:
    """A record file as written by ``write_record``; ``ValueError`` naming it where it cannot be read."""
    import gzip
    import zlib

    try:
        return json.loads(gzip.decompress(path.read_bytes()))
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise unreadable_record(path, e) from None


def recorded_episodes(results: Path, group: str) -> dict[str, list[dict[str, Any]]]:
    """Entry -> every evaluated episode of its seed runs recorded in ``results`` for ``group`` (one model per group,
    or one per task), each with its run's ``training_seed``; ``ValueError`` naming a record that cannot be read."""
    episodes: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((results / "records" / group).glob("**/seed-*.json.gz")):
        entry = path.relative_to(results / "records" / group).parts[0]
        record = load_record(path)
        try:
            episodes.setdefault(entry, []).extend({**e, "training_seed": record["seed"]}
                                                  for evaluation in record["evals"].values()
                                                  for e in evaluation["per_episode"])
        except (KeyError, TypeError, AttributeError) as e:
            raise unreadable_record(path, e) from None
    return episodes


def read_record(cfg: BenchConfig, entry: str, cell: Cell) -> dict[str, Any] | None:
    """The recorded seed run of ``entry`` in ``cell``, or None where there is none; ``ValueError`` where it was
    measured under other settings (as ``train_preset`` refuses a run trained under other settings) or unreadable."""
    path = record_path(cfg, entry, cell)
    if not path.exists():
        return None
    record = load_record(path)
    try:
        settings = record["settings"]
    except (KeyError, TypeError) as e:
        raise unreadable_record(path, e) from None
    if settings != record_settings(cfg, entry, cell):
        raise ValueError(f"{path} was measured with {record['settings']}, not {record_settings(cfg, entry, cell)};"
                         " delete it to measure anew, or choose another --results")
    return record


def write_record(cfg: BenchConfig, entry: str, cell: Cell, run: SeedRun,
                 timing: dict[str, Any] | None = None) -> None:
    """Record the finished seed run (and, once timed, its timing) beside the leaderboard, so that the benchmark
    can be rebuilt and extended where its runs are gone. Generalization cells measured earlier stay in it."""
    import gzip

    earlier = read_record(cfg, entry, cell) or {}
    evals = {task: {k: info[k] for k in RECORDED_EVAL if k in info} for task, info in run.evals.items()}
    for info in evals.values():
        info["model"] = {k: v for k, v in info["model"].items() if k != "run"}
    record = {"settings": record_settings(cfg, entry, cell), "seed": run.seed,
              "summary": {k: v for k, v in run.summary.items() if k != "weights_sha256"}, "evals": evals,
              "offline": {"offline": run.offline["offline"]}, "shifts": {**earlier.get("shifts", {}), **run.shifts},
              "timing": timing if timing is not None else earlier.get("timing")}
    # Compact and without a timestamp: the same figures give the same bytes.
    atomic_write_bytes(record_path(cfg, entry, cell), gzip.compress(json.dumps(record).encode(), mtime=0))


def recorded_run(cfg: BenchConfig, entry: str, cell: Cell,
                 timed: bool) -> tuple[SeedRun, dict[str, Any] | None] | None:
    """The seed run of ``entry`` in ``cell`` and its timing from its record, where its trained run is not under
    ``--out`` and the record holds everything this bench asks for (the evaluations, each asked generalization
    cell, and where the cell is the one its group's latency is ``timed`` on, the timing); None where the run is
    there to be used, or nothing can stand in for it. ``ValueError`` where the run and the record are two
    trainings of the entry: the run would silently replace the recorded measurement."""
    run_summary = cell.run_dir(entry) / "train_summary.json"
    record = read_record(cfg, entry, cell)
    if run_summary.exists():
        summary = {k: v for k, v in json.loads(run_summary.read_text()).items() if k != "weights_sha256"}
        if record is not None and record["summary"] != summary:
            raise ValueError(f"{record_path(cfg, entry, cell)} records another training of {entry} than "
                             f"{run_summary.parent} (trained {record['summary'].get('train_time_s', 0):.0f} s "
                             f"against {summary.get('train_time_s', 0):.0f} s, final loss "
                             f"{record['summary'].get('final_loss_smooth')} against {summary.get('final_loss_smooth')}): "
                             f"move {cell.preset_dir(trained_entry(entry))} away to use the record, or delete the record to "
                             "record this run in its place")
        return None
    if record is None:
        return None
    asked = [f"{name}={level}" for name, level, _ in shift_cells(cfg, cell)] if get_protocol(
        cfg.protocol).shift_cell_episodes else []
    missing = [spec for spec in asked if spec not in record["shifts"]]
    if (timed and record["timing"] is None) or missing:
        print(f"    {record_path(cfg, entry, cell)} lacks {', '.join(missing) or 'a timing'}; its run is not "
              f"under {cfg.out}: it is trained anew", flush=True)
        return None
    shifts = {spec: record["shifts"][spec] for spec in asked}
    return SeedRun(record["seed"], record["summary"], record["evals"], record["offline"], shifts), record["timing"]


def shift_cells(cfg: BenchConfig, cell: Cell) -> list[tuple[str, str, list[str]]]:
    """The generalization grid's cells: (factor, level, the cell's tasks it applies to) for every factor of the
    suite (or of ``--shift-factors``) that shifts one of them, at every level (or those of ``--shift-levels``)."""
    suite, tasks = get_suite(cfg.suite), cell.tasks.split(",")
    cells = []
    for name in cfg.shift_factors or suite.factors:
        applies = [t for t in tasks if suite.factor_applies(name, t)]
        cells += [(name, level, applies) for level in LEVELS if applies and (not cfg.shift_levels
                                                                            or level in cfg.shift_levels)]
    return cells


def shift_grid(cfg: BenchConfig, preset: str, cell: Cell, evals: dict[str, dict[str, Any]],
               cell_episodes: int) -> dict[str, dict[str, Any]]:
    """The generalization benchmark for one trained run: each of ``shift_cells`` evaluated on the tasks its factor
    applies to with ``cell_episodes`` episodes or more, spread evenly over them (at most the main evaluation's
    episodes per task). Each cell's episodes run on the first seeds of the main evaluation, so
    each outcome is paired with the unshifted outcome from the same start: ``{spec: {factor, level, tasks,
    shifted, unshifted}}`` (outcomes in the same order). Each cell's evaluation is kept once done."""
    folder = cell.preset_dir(preset)
    grid = {}
    for name, level, applies in shift_cells(cfg, cell):
        per_task = min(-(-cell_episodes // len(applies)), cfg.episodes)
        spec = f"{name}={level}"
        print(f"    {preset} under {spec}: {per_task} episodes on each of {len(applies)} tasks", flush=True)
        info = _evaluate(_eval_config(cfg, cell, preset, ",".join(applies), per_task,
                                      folder / "shifts" / f"{name}-{level}", shift=spec))
        twin = {(t, e["seed"]): e["success"] for t in applies for e in evals[t]["per_episode"]}
        # The cell's ceiling: an object placed past its range or moved mid-episode can defeat the expert too.
        expert = expert_outcomes(cfg, cell.root / "expert-shifts" / f"{name}-{level}.json", applies, per_task,
                                 spec)
        episodes = info["per_episode"]
        grid[spec] = {"factor": name, "level": level, "tasks": applies,
                      "shifted": [bool(e["success"]) for e in episodes],
                      "unshifted": [bool(twin[e["task"], e["seed"]]) for e in episodes],
                      "expert": [expert[e["task"]][e["seed"] - EVAL_SEED_BASE] for e in episodes]}
    return grid


