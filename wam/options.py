"""Bounds of the command-line options, declared once beside each option in its typed config.

A config field carries its bounds as ``annotated_types`` metadata, e.g. ``steps: Annotated[int, Ge(1)] = 3000`` or
``future_offsets: tuple[Annotated[int, Ge(1)], ...] | None``. A command config inherits ``CheckedOptions``: building
it (from the command line or from Python) checks every numeric field, nested configs included, and refuses an
out-of-range, NaN or infinite value with one ``OptionError`` naming the option as it is spelled on the command line.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import typing
from typing import Any

import tyro
from annotated_types import Ge, GroupedMetadata, Gt, Le, Lt

Bound = Ge | Gt | Le | Lt
# bound type -> (how the error reads, the attribute holding the limit, the test a value must pass)
_RULES: dict[type, tuple[str, str, Any]] = {Ge: ("at least", "ge", operator.ge), Gt: ("greater than", "gt", operator.gt),
                                            Le: ("at most", "le", operator.le), Lt: ("less than", "lt", operator.lt)}
_OMIT_PREFIXES = typing.get_args(tyro.conf.OmitArgPrefixes[int])[1]  # tyro's marker object


class OptionError(Exception):
    """An option given a value outside its declared bounds.

    Not a ``ValueError`` on purpose: tyro turns a ``ValueError`` raised while it builds a config into a box of its
    own, while the command line reports this one as a single ``wam: error:`` line.
    """


def bounds(hint: Any) -> list[Bound]:
    """Every bound declared anywhere in a type hint (in ``Annotated`` metadata, through unions and tuples)."""
    found: list[Bound] = []
    if typing.get_origin(hint) is typing.Annotated:
        base, *metadata = typing.get_args(hint)
        for m in metadata:  # an Interval groups several bounds
            found += [b for b in (m if isinstance(m, GroupedMetadata) else [m]) if isinstance(b, (Ge, Gt, Le, Lt))]
        return found + bounds(base)
    for arg in typing.get_args(hint):
        found += bounds(arg)
    return found


def bound_value(bound: Bound) -> float:
    return getattr(bound, _RULES[type(bound)][1])


def describe(bound: Bound) -> str:
    """``at least 1``, ``less than 1.0``, ..."""
    return f"{_RULES[type(bound)][0]} {bound_value(bound)}"


def is_numeric(hint: Any) -> bool:
    """Whether a field's values are numbers (an int or float, optional or in a tuple); bools are not."""
    if typing.get_origin(hint) is typing.Annotated:
        return is_numeric(typing.get_args(hint)[0])
    if hint in (int, float):
        return True
    return any(is_numeric(arg) for arg in typing.get_args(hint) if arg is not type(None) and arg is not Ellipsis)


def option_name(field_name: str, prefix: str = "") -> str:
    """The option as tyro spells it: ``--`` + nested prefix + the field name with hyphens."""
    return f"--{prefix}{field_name.replace('_', '-')}"


def nested_prefix(field: dataclasses.Field, hint: Any, prefix: str) -> str:
    """The prefix tyro gives a nested config's options: none under ``OmitArgPrefixes``, else ``field.``."""
    omitted = typing.get_origin(hint) is typing.Annotated and _OMIT_PREFIXES in typing.get_args(hint)[1:]
    return prefix if omitted else f"{prefix}{field.name.replace('_', '-')}."


def check_options(config: Any, prefix: str = "") -> None:
    """Raise ``OptionError`` for the first numeric field of ``config`` (or of a nested config) outside its bounds."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        value, hint = getattr(config, field.name), hints[field.name]
        if dataclasses.is_dataclass(value):
            check_options(value, nested_prefix(field, hint, prefix))
            continue
        if not is_numeric(hint) or value is None:
            continue
        name = option_name(field.name, prefix)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f"{name} must be a finite number, got {v}")
            for bound in bounds(hint):
                if not _RULES[type(bound)][2](v, bound_value(bound)):
                    raise OptionError(f"{name} must be {describe(bound)}, got {v}")


class CheckedOptions:
    """Mixin for a command's config dataclass: its options are checked against their bounds when it is built."""

    def __post_init__(self) -> None:
        check_options(self)
