"""Crash-safe file writes and the JSON form of typed configs."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import json
import os
import re
import shutil
import typing
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write, as a file or a directory; when the block succeeds it replaces
    ``path`` whole, and on any failure (a full disk, a signal) it is removed. Readers see the old ``path`` or the
    complete new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():  # os.replace cannot replace a non-empty directory
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``atomic_path``, synced to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def safetensors_writes(path: Path) -> Iterator[None]:
    """Re-raise a safetensors I/O failure (a full disk, a read-only directory) as the ``OSError`` it wraps, naming
    ``path``, so it is reported like any other failed write."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        number = int(code.group(1))
        raise OSError(number, os.strerror(number) if number in errno.errorcode else str(e), str(path)) from None


def atomic_write_json(path: Path, obj: Any) -> None:
    """``atomic_write_bytes`` of ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def config_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (paths as strings, tuples of paths as lists of strings), for writing
    next to a run's outputs."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple) and any(isinstance(v, Path) for v in value):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return {k: plain(v) for k, v in asdict(cfg).items()}


def from_json_dict(cls: type[T], d: Any, where: str) -> T:
    """Build the dataclass ``cls`` from JSON data ``d``, refusing unknown keys and values of the wrong type.

    JSON lists become tuples where a field is a tuple, and nested dataclasses are built the same way. Raises
    ``ValueError`` naming ``where`` and the field.
    """
    from typeguard import TypeCheckError, check_type

    if not isinstance(d, dict):
        raise ValueError(f"{where} is {type(d).__name__}, not an object of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; it was written by another wam version")
    values = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_json_dict(hint, value, f"{where}.{name}")
            continue
        if typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):  # JSON holds the value; the dataclass converts it
            hint = str
        try:
            check_type(value, hint)
        except TypeCheckError:
            raise ValueError(f"{where}.{name} is {value!r:.80}, not of type {hint}") from None
        values[name] = value
    return cls(**values)
