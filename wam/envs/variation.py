"""Factors of variation: the declared distribution shifts of a suite's scenes, in levels, drawn per episode.

A suite declares its factors (``Suite.factors``): camera pose, lighting, colours, distractors, placement, a
mid-episode displacement, each with the three ``LEVELS`` of increasing strength. A shift names factors at levels,
written ``camera=medium,colour=weak`` on the command line (``wam eval --shift``, ``wam collect --shift``):

- ``NAME=LEVEL`` applies the factor at exactly that level's strength, in a direction drawn per episode (which way
  the camera moves, which tint each part gets);
- ``NAME=up-to-LEVEL`` draws the strength per episode, uniformly between none and that level (domain
  randomization of training data);
- a bare ``NAME`` means ``NAME=medium``; ``none`` is the training distribution.

Every draw is reproducible: episode ``reset(seed=s)`` under factor ``f`` draws from a generator seeded by
``(s, f's position in the suite's declaration)`` alone, so a factor draws the same at the same seed whatever else
is shifted, and the simulator's own placement draw is the unshifted one (except under a placement factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = ("weak", "medium", "strong")
MIDDLE = "medium"
UP_TO = "up-to-"
NONE = "none"
SHIFT_STREAM = 0x5D1F7
"""Seeds the draws of a factor apart from every other random stream of an episode."""


@dataclass(frozen=True)
class Factor:
    """One declared factor of variation: what it changes, and what each level means."""

    name: str
    description: str
    levels: dict[str, str]
    """For each of ``LEVELS``, what that strength means in the simulator's units."""

    def __post_init__(self) -> None:
        assert tuple(self.levels) == LEVELS, f"factor {self.name}: levels must be {LEVELS}"


@dataclass(frozen=True)
class Setting:
    """A factor at a level, exact or drawn up to it."""

    factor: str
    level: str
    up_to: bool = False

    def __str__(self) -> str:
        return f"{self.factor}={UP_TO if self.up_to else ''}{self.level}"

    def scale(self, rng: np.random.Generator) -> float:
        """The fraction of the level's strength this episode applies: all of it, or a uniform draw up to it."""
        return float(rng.uniform(0.0, 1.0)) if self.up_to else 1.0


@dataclass(frozen=True)
class Shift:
    """A parsed shift: the settings of some of a suite's factors, in the suite's declaration order."""

    settings: tuple[Setting, ...] = ()
    order: tuple[str, ...] = ()
    """The suite's factor names in declaration order (each factor's random stream is its position here)."""

    def __str__(self) -> str:
        return ",".join(map(str, self.settings)) or NONE

    def __bool__(self) -> bool:
        return bool(self.settings)

    def __getitem__(self, factor: str) -> Setting | None:
        return next((s for s in self.settings if s.factor == factor), None)

    def only(self, factors: list[str]) -> Shift:
        """This shift restricted to ``factors``."""
        return Shift(tuple(s for s in self.settings if s.factor in factors), self.order)

    def rng(self, factor: str, seed: int | None) -> np.random.Generator:
        """The generator of ``factor``'s draws for the episode reset with ``seed`` (fresh entropy for None)."""
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng([SHIFT_STREAM, self.order.index(factor), int(seed) & 0xFFFFFFFF])


def parse_shift(spec: str, factors: dict[str, Factor], suite: str) -> Shift:
    """The shift ``spec`` names (see the module docstring), or ``ValueError`` saying what is wrong with it."""
    spec = (spec or NONE).strip()
    order = tuple(factors)
    if spec == NONE:
        return Shift((), order)
    if not factors:
        raise ValueError(f"the {suite} suite declares no factors of variation, so it has no shift {spec!r}")
    settings: dict[str, Setting] = {}
    for item in spec.split(","):
        name, _, level = item.strip().partition("=")
        if name not in factors:
            raise ValueError(f"unknown factor {name!r} in shift {spec!r} for the {suite} suite; choose from: "
                             f"{', '.join(factors)} (see wam eval --list-shifts)")
        if name in settings:
            raise ValueError(f"factor {name!r} appears twice in shift {spec!r}")
        up_to = level.startswith(UP_TO)
        level = level.removeprefix(UP_TO) or MIDDLE
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r} of factor {name!r}; choose from: {', '.join(LEVELS)} "
                             f"(or {UP_TO}LEVEL to draw the strength per episode up to LEVEL)")
        settings[name] = Setting(name, level, up_to)
    return Shift(tuple(settings[name] for name in order if name in settings), order)


def random_direction(rng: np.random.Generator, dims: int = 3) -> np.ndarray:
    """A unit vector drawn uniformly on the sphere (the circle for ``dims=2``)."""
    v = rng.normal(size=dims)
    return v / np.linalg.norm(v)


def describe_factors(suite: str, factors: dict[str, Factor]) -> str:
    """The listing of ``wam eval --list-shifts``: every factor with what it changes and what each level means."""
    if not factors:
        return f"the {suite} suite declares no factors of variation (only --shift none)"
    lines = [f"{suite}: --shift NAME=LEVEL[,NAME=LEVEL...]  (NAME alone: NAME={MIDDLE}; NAME={UP_TO}LEVEL draws the "
             "strength per episode, up to LEVEL)"]
    width = max(map(len, factors))
    for factor in factors.values():
        lines.append(f"  {factor.name:<{width}}  {factor.description}")
        lines += [f"  {'':<{width}}    {level}: {meaning}" for level, meaning in factor.levels.items()]
    return "\n".join(lines)
