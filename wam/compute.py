"""Where a command computes: the torch device it asks for, the CPU threads a stage of it uses, and the local
processes a bench spreads independent jobs over.

The CPU thread count is process-wide in torch. A bench trains, evaluates (one thread per model call) and trains the
next entry in one process, so each stage sets its own count for its duration and gives the process's back after;
otherwise every training after the first evaluation would inherit that evaluation's single thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def in_processes(target: Callable[..., Any], jobs: dict[str, tuple[Path, tuple[Any, ...]]], processes: int,
                 done: str) -> dict[str, Any]:
    """``target(*args)`` for every job ``name: (log, args)``, ``processes`` at a time, each in a spawned process that
    writes its output (progress bars included) to its log; prints a line per job as it ends. A failed job does not
    stop the others; once all have ended, the failures are raised together. Returns ``{name: result}``."""
    results, failed = {}, []
    # spawned, not forked: a forked child inherits the parent's CUDA and thread-pool state
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_logged, log, target, args): (name, log) for name, (log, args) in jobs.items()}
        for future in as_completed(futures):
            name, log = futures[future]
            error = future.exception()
            print(f"{'FAILED' if error else done} {name} (log: {log})", flush=True)
            if error is None:
                results[name] = future.result()
            else:
                failed.append(f"{name}: {error}")
    if failed:
        raise ValueError(f"{len(failed)} of {len(jobs)} jobs failed (each one's log says why): " + "; ".join(failed))
    return results


def _logged(log: Path, target: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """``target(*args)`` in a worker process, its output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream, contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
        return target(*args)
