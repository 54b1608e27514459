"""Random draws for batches whose rows belong to different episodes, each episode with its own generator.

A model call may serve several environments at once (batched evaluation). For its outcome to equal that of one
call per environment, the rows of each environment must be drawn from that environment's generator, in the same
amounts and order. ``generator`` may therefore be one generator (or None) for the whole batch, or a sequence of
generators that split the leading dimension into equal consecutive blocks, one block per generator: a block of
``m`` rows draws exactly what a call of batch ``m`` with that generator alone would draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def _blocks(rows: int, generator: Sequence[torch.Generator]) -> int:
    if not generator or rows % len(generator):
        raise ValueError(f"a batch of {rows} rows cannot be split evenly over {len(generator)} generators")
    return rows // len(generator)


def _draw(draw: Callable[..., torch.Tensor], shape: Sequence[int], generator: Generators,
          device: torch.device | str | None) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return draw(tuple(shape), generator=generator, device=device)
    block = (_blocks(shape[0], generator), *shape[1:])
    return torch.cat([draw(block, generator=g, device=device) for g in generator])


def randn(shape: Sequence[int], generator: Generators = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape`` (see the module docstring for ``generator``)."""
    return _draw(torch.randn, shape, generator, device)


def rand(shape: Sequence[int], generator: Generators = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform noise in [0, 1) of ``shape``."""
    return _draw(torch.rand, shape, generator, device)


def multinomial(probs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """One draw per row of ``probs [B, V]``: indices ``[B, 1]``."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.multinomial(probs, 1, generator=generator)
    m = _blocks(probs.shape[0], generator)
    return torch.cat([torch.multinomial(probs[i * m:(i + 1) * m], 1, generator=g) for i, g in enumerate(generator)])
