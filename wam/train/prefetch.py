"""Batches of the coming training steps, gathered on a background thread while the current step computes.

Each step's batch is drawn from its own generator, a function of (seed, rank, step) alone, so prefetching changes
nothing that is drawn: a prefetched run, an unprefetched one and a resumed one see the same batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

Batch = Any
"""What a step consumes: a dictionary of tensors, or a tuple of them (labelled and video windows; None for none)."""


def pinned(batch: Batch) -> Batch:
    """``batch`` with its tensors in page-locked memory, so copies to a CUDA device run at full speed."""
    if isinstance(batch, tuple):
        return tuple(pinned(b) for b in batch)
    if batch is None:
        return None
    return {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class Prefetcher:
    """Iterates ``(step, batch)`` for ``steps``, keeping ``depth`` batches in flight on one worker thread.

    ``draw(step, rng)`` gathers the batch of ``step``; ``rng_of(step)`` is the step's own generator. With ``pin``
    (CUDA), batches arrive in pinned memory. ``depth=0`` gathers each batch in the calling thread when it is needed.
    """

    def __init__(self, draw: Callable[[int, np.random.Generator], Batch], rng_of: Callable[[int], np.random.Generator],
                 steps: range, depth: int = 2, pin: bool = False):
        self._draw, self._rng_of, self._steps, self._depth, self._pin = draw, rng_of, steps, depth, pin

    def _gather(self, step: int) -> Batch:
        batch = self._draw(step, self._rng_of(step))
        return pinned(batch) if self._pin else batch

    def __iter__(self) -> Iterator[tuple[int, Batch]]:
        if self._depth == 0:
            for step in self._steps:
                yield step, self._gather(step)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wam-batches") as pool:
            pending: deque[tuple[int, Future]] = deque()
            upcoming = iter(self._steps)
            try:
                for step in upcoming:
                    pending.append((step, pool.submit(self._gather, step)))
                    if len(pending) > self._depth:
                        ready, future = pending.popleft()
                        yield ready, future.result()
                while pending:
                    ready, future = pending.popleft()
                    yield ready, future.result()
            finally:  # an abandoned iteration (an error in the step) must not leave work queued
                for _, future in pending:
                    future.cancel()
