"""The survey census of published World Action Models, filterable on the 4-tuple axes."""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

AXES = ("philosophy", "substrate", "backbone", "coupling", "deployment")

# '/' and '.' count as separators too, so "ar diffusion" and "cond rollout" also match.
_SEPARATORS = re.compile(r"[\s\-_()/.]+")


@dataclass(frozen=True)
class CensusRow:
    """One published method: its 4-tuple classification plus bibliographic details."""

    method: str
    table_date: str
    arxiv: str
    philosophy: str
    substrate: str
    backbone: str
    coupling: str
    deployment: str
    backbone_detail: str
    efficiency_move: bool

    def to_dict(self) -> dict[str, str | bool]:
        """Return the row as a plain JSON-serialisable dict."""
        return asdict(self)


def _census_csv() -> Traversable:
    return files("wam.presets") / "census.csv"


@cache
def _rows() -> tuple[CensusRow, ...]:
    text = _census_csv().read_text(encoding="utf-8")
    flags = {"yes": True, "no": False}
    return tuple(
        CensusRow(**{**rec, "efficiency_move": flags[rec["efficiency_move"]]})
        for rec in csv.DictReader(text.splitlines())
    )


def load_census() -> list[CensusRow]:
    """Return every census row, in table order (a fresh list over a cached parse)."""
    return list(_rows())


# The names wam.anatomy uses, where they differ from the survey's wording.
_ANATOMY_ALIASES = {"jepa": "joint embedding", "post head": "post prediction head",
                    "feature token": "feature vlm token", "vlm": "llm vlm"}


def _normalize(value: str) -> str:
    return _SEPARATORS.sub(" ", value.lower()).strip()


def _query(value: str) -> str:
    needle = _normalize(value)
    return _ANATOMY_ALIASES.get(needle, needle)


def filter_census(
    rows: list[CensusRow],
    *,
    philosophy: str | None = None,
    substrate: str | None = None,
    backbone: str | None = None,
    coupling: str | None = None,
    deployment: str | None = None,
) -> list[CensusRow]:
    """Keep the rows whose axis values contain every given query.

    Matching is a case-insensitive substring test after treating '-', '_',
    spaces, parentheses, '/' and '.' as one separator, so ``pixel-latent``
    matches "Pixel (latent)". A query matching no value the axis has anywhere
    in the census raises ``ValueError`` listing the valid values.
    """
    queries = dict(
        philosophy=philosophy, substrate=substrate, backbone=backbone,
        coupling=coupling, deployment=deployment,
    )
    for axis, query in queries.items():
        if query is None:
            continue
        # Validate against the whole census so chained filters on a subset never misreport a real value.
        choices = sorted({getattr(r, axis) for r in (*_rows(), *rows)}, key=str.casefold)
        needle = _query(query)
        if not any(needle in _normalize(c) for c in choices):
            raise ValueError(f"unknown {axis} {query!r}; choose from: {', '.join(choices)}")
        rows = [r for r in rows if needle in _normalize(getattr(r, axis))]
    return list(rows)


def axis_counts(rows: list[CensusRow]) -> dict[str, dict[str, int]]:
    """Count rows per value on each 4-tuple axis, most common value first."""
    return {
        axis: dict(sorted(Counter(getattr(r, axis) for r in rows).items(), key=lambda kv: (-kv[1], kv[0])))
        for axis in AXES
    }


@dataclass
class CensusConfig:
    """List the published World Action Models of the survey census, filtered on any axis of the 4-tuple."""

    json: bool = False
    """Print a JSON list of rows instead of the table."""
    philosophy: str | None = None
    """Keep methods whose philosophy contains this (e.g. latent-only)."""
    substrate: str | None = None
    """Keep methods whose predicted substrate contains this (e.g. pixel-latent)."""
    backbone: str | None = None
    """Keep methods whose generative backbone contains this (e.g. diffusion)."""
    coupling: str | None = None
    """Keep methods whose action coupling contains this (e.g. post-prediction)."""
    deployment: str | None = None
    """Keep methods whose deployment mode contains this (e.g. chunked)."""


def run_census(cfg: CensusConfig) -> list[CensusRow]:
    """Filter the census by ``cfg`` and print it as JSON or as rich tables; return the rows."""
    everything = load_census()
    rows = filter_census(everything, **{axis: getattr(cfg, axis) for axis in AXES})
    if cfg.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return rows

    console = Console()
    table = Table(title="World Action Model census")
    columns = ("method", "table_date", *AXES)
    for name in columns:
        table.add_column("date" if name == "table_date" else name, no_wrap=name == "method")
    for r in rows:
        table.add_row(*(escape(getattr(r, name)) for name in columns))
    if not console.is_terminal:
        # Rich assumes 80 columns when piped; widen so files and pagers get untruncated rows.
        natural = Measurement.get(console, console.options.update_width(sys.maxsize), table).maximum
        console.width = max(console.width, natural)
    console.print(table)

    counts = Table(title="Counts per axis")
    counts.add_column("axis")
    counts.add_column("counts")
    for axis, tally in axis_counts(rows).items():
        counts.add_row(axis, escape(", ".join(f"{value} {n}" for value, n in tally.items())))
    console.print(counts)
    console.print(f"{len(rows)} of {len(everything)} methods")
    return rows
