"""Training checkpoints that ``wam train --resume`` continues from, without pickle.

A checkpoint is a directory ``RUN/checkpoints/step-N/`` holding

- ``model/``: the EMA weights as a normal model directory (``wam eval --run RUN/checkpoints/step-N`` accepts it);
- ``training/weights.safetensors``: the raw weights the optimizer is updating;
- ``training/state.safetensors``: the optimizer moments and the EMA shadow weights;
- ``training/state.json``: the step, the schedule, the optimizer's hyper-parameters, the EMA counters, and a SHA-256
  of every file above and of itself, so a truncated or altered checkpoint is refused.

No random-generator state is stored: the training loop draws each step's batch and noise from generators seeded by
(seed, rank, step), so the step alone fixes the data-loader position and every later draw.

The directory is written under a temporary name and renamed into place, so a run killed mid-write leaves the
previous checkpoint as the latest one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wam.io import atomic_path, atomic_write_json, safetensors_writes
from wam.model import CheckpointError, WorldActionModel

STATE_JSON, STATE_TENSORS, RAW_WEIGHTS = "state.json", "state.safetensors", "weights.safetensors"
FORMAT_VERSION = 2


@dataclass
class TrainingState:
    """Everything the loop needs besides the model to continue exactly where it stopped."""

    step: int
    extra: dict[str, Any]
    """Loop bookkeeping (smoothed loss, elapsed time)."""


def checkpoint_dir(out: Path, step: int) -> Path:
    return Path(out) / "checkpoints" / f"step-{step:06d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_sha256(state: dict[str, Any]) -> str:
    """Checksum of the state itself (without its own entry), so an edited ``state.json`` is caught too."""
    own = {**state, "sha256": {k: v for k, v in state["sha256"].items() if k != STATE_JSON}}
    return hashlib.sha256(json.dumps(own, sort_keys=True).encode()).hexdigest()


def _checked_files(directory: Path) -> list[Path]:
    return [directory / "model" / "config.json", directory / "model" / "model.safetensors",
            directory / "training" / RAW_WEIGHTS, directory / "training" / STATE_TENSORS]


def save_checkpoint(out: Path, step: int, model: WorldActionModel, optimizer: torch.optim.Optimizer,
                    schedule: torch.optim.lr_scheduler.LRScheduler, ema: Any, extra: dict[str, Any]) -> Path:
    """Write the checkpoint of ``step`` atomically; returns its directory."""
    from safetensors.torch import save_file, save_model

    final = checkpoint_dir(out, step)
    with atomic_path(final) as tmp:  # a re-run over the same step replaces it whole
        trainable = [p for p in model.parameters() if p.requires_grad]
        ema.store(trainable)
        ema.copy_to(trainable)
        try:
            model.save(tmp / "model")
        finally:
            ema.restore(trainable)
        (tmp / "training").mkdir(parents=True)
        with safetensors_writes(tmp / "training" / RAW_WEIGHTS):
            save_model(model, str(tmp / "training" / RAW_WEIGHTS))

        optimizer_state = optimizer.state_dict()
        ema_state = ema.state_dict()
        tensors = {f"optimizer.{i}.{k}": v for i, s in optimizer_state["state"].items() for k, v in s.items()}
        tensors |= {f"ema.{i}": p for i, p in enumerate(ema_state.pop("shadow_params"))}
        with safetensors_writes(tmp / "training" / STATE_TENSORS):
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                      str(tmp / "training" / STATE_TENSORS))

        state = {"format": FORMAT_VERSION, "step": step, "schedule": schedule.state_dict(),
                 "optimizer_param_groups": optimizer_state["param_groups"], "ema": ema_state,
                 "extra": extra}
        state["sha256"] = {str(p.relative_to(tmp)): _sha256(p) for p in _checked_files(tmp)}
        state["sha256"][STATE_JSON] = _json_sha256(state)
        atomic_write_json(tmp / "training" / STATE_JSON, state)
    return final


def checkpoints(out: Path) -> list[Path]:
    """The checkpoint directories under ``out``, oldest first."""
    return sorted(p for p in (Path(out) / "checkpoints").glob("step-*") if (p / "training" / STATE_JSON).exists())


def latest_checkpoint(out: Path) -> Path | None:
    """The checkpoint directory with the highest step under ``out``, or None."""
    found = checkpoints(out)
    return found[-1] if found else None


def prune_checkpoints(out: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for old in checkpoints(out)[:-keep]:
        shutil.rmtree(old)


def load_checkpoint(directory: Path, model: WorldActionModel, optimizer: torch.optim.Optimizer,
                    schedule: torch.optim.lr_scheduler.LRScheduler, ema: Any) -> TrainingState:
    """Restore ``model``, ``optimizer``, ``schedule`` and ``ema`` in place from ``directory``.

    Raises ``CheckpointError`` naming the file when any part is missing, truncated or altered.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, load_model

    directory = Path(directory)
    fix = f"delete {directory} to resume from the checkpoint before it, or train without --resume"
    state_path = directory / "training" / STATE_JSON
    try:
        state = json.loads(state_path.read_text())
        recorded = state["sha256"]
        intact = recorded[STATE_JSON] == _json_sha256(state)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{state_path} is missing or unreadable ({type(e).__name__}: {e}); {fix}") from None
    if not intact:
        raise CheckpointError(f"{state_path} was altered (its SHA-256 differs from the one it records); {fix}")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{state_path} has format {state.get('format')!r}, this wam reads {FORMAT_VERSION}; {fix}")
    for path in _checked_files(directory):
        name = str(path.relative_to(directory))
        if not path.exists() or recorded.get(name) != _sha256(path):
            raise CheckpointError(f"{path} is missing, truncated or altered (its SHA-256 differs from the one in "
                                  f"{state_path}); {fix}")
    try:
        load_model(model, str(directory / "training" / RAW_WEIGHTS), strict=True, device=str(model.device))
        tensors = load_file(str(directory / "training" / STATE_TENSORS))
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                moments.setdefault(int(index), {})[name] = value.to(model.device) if name != "step" else value
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in state["optimizer_param_groups"]]
        optimizer.load_state_dict({"state": moments, "param_groups": groups})
        n_shadow = sum(k.startswith("ema.") for k in tensors)
        ema.load_state_dict({**state["ema"], "shadow_params": [tensors[f"ema.{i}"] for i in range(n_shadow)]})
        ema.to(model.device)
        schedule.load_state_dict(state["schedule"])
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{directory} does not match this run's model or optimizer "
                              f"({str(e).splitlines()[0][:200]}); {fix}") from None
    return TrainingState(step=int(state["step"]), extra=state.get("extra", {}))
