"""Environment suites: one module per simulator, one registry entry each (see ``wam.envs.base`` and docs/suites.md).

Tasks are addressed as ``task`` (in the suite given by ``--suite``), ``suite/task``, or a whole named group such
as ``metaworld/easy``. A suite's module is imported only when the suite is asked for, so a machine without one
simulator can still use the others.
"""

from __future__ import annotations

import importlib
from functools import cache

from wam.envs.base import KEYPOINT_ROLES, Expert, StatePropagator, Suite, SuiteEnv, Track
from wam.options import OptionError

__all__ = ["KEYPOINT_ROLES", "SUITES", "DEFAULT_SUITE", "Expert", "StatePropagator", "Suite", "SuiteEnv", "Track",
           "check_suite_name", "get_suite", "resolve_tasks"]

SUITES: dict[str, str] = {
    "metaworld": "wam.envs.metaworld:MetaWorldSuite",
    "metaworld-lerobot": "wam.envs.metaworld:MetaWorldLeRobotSuite",
    "metaworld-wrist": "wam.envs.metaworld:MetaWorldWristSuite",
    "pusht": "wam.envs.pusht:PushTSuite",
}
"""Suite name -> ``module:class``."""
DEFAULT_SUITE = "metaworld"


def check_suite_name(name: str) -> str:
    """``name`` if a suite is registered under it, else ``OptionError`` listing the registered ones."""
    if name not in SUITES:
        raise OptionError(f"unknown suite {name!r}; choose from: {', '.join(SUITES)} (see docs/suites.md to add one)")
    return name


@cache
def get_suite(name: str) -> Suite:
    """The suite registered under ``name`` (one instance per process)."""
    module, cls = SUITES[check_suite_name(name)].split(":")
    return getattr(importlib.import_module(module), cls)()


def resolve_tasks(spec: str, suite: str = DEFAULT_SUITE) -> tuple[Suite, list[str]]:
    """The suite and task names that ``spec`` (comma-separated ``task``, ``suite/task`` or ``suite/group``) names;
    ``ValueError`` for an unknown task or group, or for tasks of more than one suite."""
    chosen, grouped = resolve_task_groups(spec, suite)
    return chosen, [task for _, _, task in grouped]


def resolve_task_groups(spec: str, suite: str = DEFAULT_SUITE) -> tuple[Suite, list[tuple[str, int, str]]]:
    """As ``resolve_tasks``, each task with the group that named it and its place there, as LeRobot's evaluation
    reports them (``task_group``, ``task_id``): a group's name and index, or for a task named alone the task and 0.
    A task named twice keeps its first place."""
    grouped: list[tuple[str, int, str]] = []
    suites: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        owner, _, name = item.rpartition("/")
        owner = owner or suite
        found = get_suite(owner)
        suites.add(owner)
        group = found.groups().get(name)
        if group is None and name in SUITES and name != owner and name not in found.tasks():
            raise ValueError(f"{name!r} is a suite, not a {owner} task; pass --suite {name} (or name its tasks as "
                             f"{name}/TASK)")
        grouped += [(name, i, task) for i, task in enumerate(group)] if group is not None else \
            [(name, 0, task) for task in found.check_tasks([name])]
    if len(suites) > 1:
        raise ValueError(f"--tasks {spec!r} names tasks of several suites ({', '.join(sorted(suites))}); a dataset or "
                         "an evaluation holds one suite")
    chosen = get_suite(suites.pop() if suites else suite)
    first = {task: (group, i, task) for group, i, task in reversed(grouped)}
    chosen.check_tasks(list(first))
    return chosen, [first[task] for task in dict.fromkeys(t for _, _, t in grouped)]
