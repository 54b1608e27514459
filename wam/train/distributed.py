"""Multi-process training: ``torchrun --nproc_per_node=N -m wam.cli train ...`` or ``wam train --nproc N``.

Every process builds the same model, rank 0's weights are broadcast to the others, and gradients are averaged by
``DistributedDataParallel`` (gloo on CPU, nccl on CUDA). Each rank draws its own share of the batch; only rank 0
writes the config, the log, checkpoints and the model.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> Ranks:
    """Join the process group torchrun set up (a no-op outside torchrun); CUDA ranks take their local GPU."""
    if not launched_by_torchrun():
        return Ranks(device=device)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(rank, world_size, device)


def finish(ranks: Ranks, barrier: bool = True) -> None:
    """Leave the process group; the barrier first avoids an intermittent gloo abort at a normal exit."""
    if ranks.distributed and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def broadcast_state(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (fitted substrates included)."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def mean_over_ranks(value: float, ranks: Ranks) -> float:
    if not ranks.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ranks.device)
    dist.all_reduce(t)
    return float(t.item()) / ranks.world_size


def weight_digests(module: nn.Module, ranks: Ranks) -> list[str]:
    """SHA-256 of ``module``'s parameters and buffers on every rank (rank order): equal when the ranks are in sync."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode() + tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    mine = torch.frombuffer(bytearray(digest.digest()), dtype=torch.uint8).to(ranks.device)
    if not ranks.distributed:
        return [mine.cpu().numpy().tobytes().hex()]
    everyone = [torch.empty_like(mine) for _ in range(ranks.world_size)]
    dist.all_gather(everyone, mine)
    return [t.cpu().numpy().tobytes().hex() for t in everyone]


def wrap(model: nn.Module, ranks: Ranks) -> nn.Module:
    """``model`` for the training step: DDP-wrapped when distributed. Unused parameters are allowed because some
    streams sit out some steps (future dropout, substrate-first schedules)."""
    if not ranks.distributed:
        return model
    return nn.parallel.DistributedDataParallel(model, find_unused_parameters=True,
                                               device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)


def relaunch(nproc: int, args: list[str]) -> int:
    """Run ``wam <args>`` in ``nproc`` processes under torchrun on this machine; returns its exit code."""
    # The workers know their number from torchrun; --nproc itself would be read by torchrun as --nproc-per-node.
    kept = [a for i, a in enumerate(args) if not (a.startswith("--nproc") or (i and args[i - 1] == "--nproc"))]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "wam.cli", *kept]
    return subprocess.run(command).returncode
