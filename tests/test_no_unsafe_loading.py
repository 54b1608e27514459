"""No data path can execute code: no pickle (or its relatives), no ``torch.load`` without ``weights_only=True``, no
``np.load`` with pickles allowed, no builtin ``eval``/``exec``, anywhere in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import wam

pytestmark = pytest.mark.reliability
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for every construct that can run code hidden in data."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
            found.append(f"{where}: calls {func.id}()")
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else ""
            if func.attr == "load" and owner == "torch" and not _is_constant(_keyword(node, "weights_only"), True):
                found.append(f"{where}: torch.load without weights_only=True")
            if func.attr == "load" and owner in ("np", "numpy") and not _is_constant(_keyword(node, "allow_pickle"),
                                                                                      False):
                found.append(f"{where}: np.load without allow_pickle=False")
            if func.attr in ("load", "load_all") and owner == "yaml":
                found.append(f"{where}: yaml.{func.attr} (use yaml.safe_load)")
            if func.attr == "read_pickle":
                found.append(f"{where}: read_pickle")
    return found


def test_the_package_loads_no_code_from_data():
    root = Path(wam.__file__).parent
    found = [u for path in sorted(root.rglob("*.py")) for u in unsafe_uses(path.read_text(), str(path.relative_to(root)))]
    assert found == []


def test_the_scanner_catches_each_unsafe_construct():
    source = """
import pickle
from joblib import load
import torch, numpy as np, yaml
torch.load("m.pt")
torch.load("m.pt", weights_only=False)
np.load("a.npy")
yaml.load(open("c.yaml"))
eval("1 + 1")
exec("x = 1")
"""
    assert len(unsafe_uses(source)) == 8
    safe = 'torch.load("m.pt", weights_only=True)\nnp.load("a.npy", allow_pickle=False)\nmodel.eval()\n'
    assert unsafe_uses(safe) == []
