"""The survey census of published World Action Models, filterable on the 4-tuple axes."""

from __future__ import annotations

import csv
import difflib
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

from wam.anatomy import CONJUNCTION, SpecError, WAMSpec

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


def find_row(name: str) -> CensusRow:
    """The census row of method ``name``, matched case-insensitively and ignoring separators ("gr-1", "GR 1", "gr1").

    An unknown name raises ``ValueError`` suggesting the closest method names.
    """
    def key(text: str) -> str:
        return _normalize(text).replace(" ", "")

    by_name = {key(r.method): r for r in _rows()}
    needle = key(name)
    if needle in by_name:
        return by_name[needle]
    close = [by_name[k].method for k in difflib.get_close_matches(needle, by_name, n=3, cutoff=0.6)]
    hint = f"; did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown census method {name!r}{hint} (`wam census` lists all {len(by_name)})")


# Survey wording -> wam.anatomy values, one small table per axis. Lookups go through _normalize, so spacing,
# case and punctuation variants of the same wording map alike.
_SUBSTRATE_WORDING = {
    "Pixel (decoded)": "pixel-decoded",
    "Pixel (latent)": "pixel-latent",
    "Pixel (decoded / latent)": "pixel-latent",  # both fit the method; we pick the latent one
    "Feature (tap)": "feature-tap",
    "Feature (teacher)": "feature-teacher",
    "Feature (encoder-only)": "feature-encoder-only",
    "Feature (VLM token)": "feature-token",
    "Geometric": "geometric",
    "Affordance": "affordance",
}
_BACKBONE_WORDING = {
    "Diffusion": "diffusion",
    "Hybrid": "hybrid",
    "LLM/VLM": "vlm",
    "Autoregressive": "autoregressive",
    # Autoregressive video diffusion with a KV cache (frames are generated causally, each denoised by diffusion):
    # the causal, cached rollout is what sets it apart from plain diffusion, so our AR backbone is the closer match.
    "AR / Diffusion": "autoregressive",
    "Joint-embedding": "jepa",
}
_COUPLING_WORDING = {
    "Post-prediction head": "post-head",
    "Joint generation": "joint",
    "Cond. rollout": "rollout",
}
_DEPLOYMENT_WORDING = {
    "Chunked": "chunked",
    "Open-loop": "open-loop",
    "Single-step": "single-step",
    "Open / Chunked": "chunked",  # run both ways in the paper; chunked is the closed-loop one
    "Interactive": "interactive",
}
# Substrate modalities (the first word of the survey wording) that no simulator of ours can produce.
_UNSIMULATED = frozenset({"audio"})
# The survey's conjunction sign, as in "Pixel (decoded) ∧ Geometric".
_SURVEY_CONJUNCTION = "∧"


def _lookup(axis: str, table: dict[str, str], wording: str) -> str:
    value = {_normalize(k): v for k, v in table.items()}.get(_normalize(wording))
    if value is None:
        raise SpecError(f"unknown {axis} wording {wording!r}; known: {', '.join(table)}")
    return value


def _substrate(wording: str) -> str:
    parts = []
    for part in (p.strip() for p in wording.split(_SURVEY_CONJUNCTION)):
        modality = _normalize(part).split(" ", 1)[0]
        if modality in _UNSIMULATED:
            raise SpecError(f"substrate {part!r} predicts {modality}, but our simulators (MetaWorld/MuJoCo) "
                            f"produce no {modality}, so it cannot be trained here")
        parts.append(_lookup("substrate", _SUBSTRATE_WORDING, part))
    return CONJUNCTION.join(parts)


def _build(row: CensusRow) -> WAMSpec:
    return WAMSpec(
        substrate=_substrate(row.substrate),
        coupling=_lookup("coupling", _COUPLING_WORDING, row.coupling),
        backbone=_lookup("backbone", _BACKBONE_WORDING, row.backbone),
        deployment=_lookup("deployment", _DEPLOYMENT_WORDING, row.deployment),
    )


def census_spec(row: CensusRow) -> WAMSpec:
    """The ``WAMSpec`` a census row's survey wording maps to, checked to be buildable in this version.

    Raises ``SpecError`` with a one-line reason, prefixed by the method name, when the wording is unknown, the
    4-tuple is impossible, or it needs a modality our simulators cannot produce.
    """
    try:
        return _build(row)
    except SpecError as err:
        raise SpecError(f"census method {row.method!r} cannot be built: {err}") from None


@cache
def runnable(row: CensusRow) -> tuple[bool, str | None]:
    """``(True, None)`` when ``census_spec(row)`` builds, else ``(False, reason)`` with the one-line reason."""
    try:
        _build(row)
    except SpecError as err:
        return False, str(err)
    return True, None


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
        records = []
        for r in rows:
            ok, why_not = runnable(r)
            records.append({**r.to_dict(), "runnable": ok, "why_not": why_not})
        print(json.dumps(records, indent=2))
        return rows

    console = Console()
    table = Table(title="World Action Model census")
    columns = ("method", "table_date", *AXES)
    for name in columns:
        table.add_column("date" if name == "table_date" else name, no_wrap=name == "method")
    table.add_column("runnable")
    for r in rows:
        ok, why_not = runnable(r)
        table.add_row(*(escape(getattr(r, name)) for name in columns), "yes" if ok else escape(why_not))
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
    n_runnable = sum(runnable(r)[0] for r in rows)
    console.print(f"{len(rows)} of {len(everything)} methods shown; {n_runnable} of {len(rows)} methods runnable")
    return rows
