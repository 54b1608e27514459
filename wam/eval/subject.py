"""The model under evaluation, shared by every evaluation mode: loaded with the run's inference knobs, checked
against its suite and tasks, and described in the reports."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from wam.compute import resolve_device
from wam.couplings.planners import PlannerOverrides
from wam.data.lerobot import DatasetError, read_episodes
from wam.deployment import Policy
from wam.envs import Suite, resolve_tasks
from wam.eval.config import EvalConfig
from wam.model import InferenceConfig, WorldActionModel


def load_for_eval(cfg: EvalConfig, directory: Path) -> tuple[WorldActionModel, InferenceConfig]:
    """The model in ``directory``, as trained, and the inference knobs the evaluation asks for (sampler steps,
    future, horizon, planner; the model's own where ``cfg`` leaves them unset)."""
    model = WorldActionModel.load(directory, device=resolve_device(cfg.device))
    planner = None if cfg.planner == PlannerOverrides() else cfg.planner.apply(model.config.planner)
    return model, model.inference(cfg.inference_steps, cfg.future, cfg.future_horizon, planner)


def check_observations(model: WorldActionModel, track: str, got: dict[str, list[int]]) -> None:
    """``ValueError`` unless an environment's observation shapes ``got`` are what ``model`` reads."""
    expected = {k: list(v) for k, v in model.config.observation_shapes.items()}
    if got != expected:
        raise ValueError(f"the model expects observations {expected} but the {track} track gives {got}")


def model_suite(cfg: EvalConfig, model: WorldActionModel) -> tuple[Suite, list[str], EvalConfig]:
    """The model's suite, the tasks of ``cfg`` in it, and ``cfg`` with its shift in the suite's canonical form;
    ``ValueError`` when ``--suite`` names another suite, or a task or shift is not the suite's."""
    name = model.config.suite
    if cfg.suite is not None and cfg.suite != name:
        raise ValueError(f"{cfg.run} holds a model trained on the {name} suite, not {cfg.suite}; evaluate it with "
                         f"--suite {name} (or without --suite)")
    suite, tasks = resolve_tasks(cfg.tasks, name)
    if suite.name != name:
        raise ValueError(f"--tasks {cfg.tasks!r} are {suite.name} tasks but the model was trained on {name}")
    return suite, tasks, replace(cfg, shift=suite.check_shift(cfg.shift, tasks))


def model_block(model: WorldActionModel, run: Path, policy: Policy | None = None,
                inference: InferenceConfig | None = None) -> dict[str, Any]:
    """What was evaluated: the 4-tuple, the inference knobs in force (the policy's, else ``inference``, else the
    model's own) and the deployment regime with its dials."""
    c, knobs = model.config, (policy.inference if policy else inference) or model.default_inference
    return {"spec": c.spec.to_dict(), "inference_steps": knobs.inference_steps, "horizon": c.horizon,
            "future_offsets": list(c.future_offsets), "future_horizon": knobs.future_horizon,
            "future_at_inference": knobs.future,
            "planner": asdict(knobs.planner) if model.coupling.plans else None,
            "deployment": None if policy is None else policy.knobs(), "run": str(run)}


def check_seeds_disjoint(run: Path, seeds: set[int], what: str = "evaluation seeds",
                          fix: str = "pick another --seed") -> None:
    """``ValueError`` when ``seeds`` include a seed of the run's training demonstrations. Evaluation seeds are
    disjoint from collection seeds by construction; this catches a user's overlapping choice. It cannot check
    data whose episodes lost their ``seed`` (LeRobot's tools drop it) and says so."""
    try:
        episodes = read_episodes(json.loads((run / "train_config.json").read_text())["data"])
    except (OSError, KeyError, ValueError, DatasetError):
        return  # the training data moved away; evaluation seeds are disjoint by construction anyway
    if any("seed" not in e for e in episodes):
        print(f"note: the training data of {run} records no seed per episode, so {what} cannot be checked against "
              "it", file=sys.stderr)
    overlap = seeds & {e["seed"] for e in episodes if "seed" in e}
    if overlap:
        raise ValueError(f"{what} {sorted(overlap)[:5]} were used for the training demonstrations; {fix}")
