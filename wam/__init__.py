"""wam: compose, train and judge World Action Models.

The public API, imported lazily so that ``import wam`` (and ``wam --help``) stays fast::

    from wam import WAMSpec, ModelConfig, WorldActionModel, LeRobotDataset, get_suite, make_policy, DreamEnv
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

__version__ = importlib.metadata.version("wam")

_EXPORTS = {
    "WAMSpec": "wam.anatomy",
    "SpecError": "wam.anatomy",
    "ModelConfig": "wam.model",
    "WorldActionModel": "wam.model",
    "LeRobotDataset": "wam.data.lerobot",
    "WindowDataset": "wam.data.windows",
    "get_suite": "wam.envs",
    "Suite": "wam.envs",
    "MetaWorldEnv": "wam.envs.metaworld",
    "ScriptedExpert": "wam.envs.metaworld",
    "make_policy": "wam.deployment",
    "DeploymentConfig": "wam.deployment",
    "DreamEnv": "wam.deployment.dream",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'wam' has no attribute {name!r}")
