"""Where a command computes: the torch device it asks for, and the CPU threads a stage of it uses.

The CPU thread count is process-wide in torch. A bench trains, evaluates (one thread per model call) and trains the
next entry in one process, so each stage sets its own count for its duration and gives the process's back after;
otherwise every training after the first evaluation would inherit that evaluation's single thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; asking for cuda without one is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    return torch.device(device)


@contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (None: the process's count as it is), and restore the
    process's count when the block ends, however it ends."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
