"""Every numeric option of every command declares its bounds, and an out-of-range value is refused where it is
parsed, with one ``wam: error:`` line naming the option, before anything runs."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from annotated_types import Ge, Gt, Le, Lt

from wam.cli import _commands, main
from wam.options import bound_value, bounds, is_numeric, nested_prefix, option_name

# Values for the options a command requires, so that only the option under test is wrong.
REQUIRED = {"data": "no-data", "out": "no-out", "run": "no-run", "tasks": "reach-v3", "task": "reach-v3",
            "episodes": "2", "action": "check", "root": "no-root"}
POSITIONAL = {"action", "root"}


def numeric_options(config: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(option, type hint) of every numeric field of ``config`` and of its nested configs."""
    hints = typing.get_type_hints(config, include_extras=True)
    found = []
    for field in dataclasses.fields(config):
        hint = hints[field.name]
        nested = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
        if dataclasses.is_dataclass(nested):
            found += numeric_options(nested, nested_prefix(field, hint, prefix))
        elif is_numeric(hint):
            found.append((option_name(field.name, prefix), hint))
    return found


def out_of_range(hint) -> list[str]:
    """Values just outside each declared bound, and NaN for float options."""
    integer = int in _scalars(hint)
    values = []
    for bound in bounds(hint):
        limit = bound_value(bound)
        step = 1 if integer else 0.5
        values.append({Ge: limit - step, Gt: limit, Le: limit + step, Lt: limit}[type(bound)])
    text = [str(int(v)) if integer else repr(float(v)) for v in values]
    return text + ([] if integer else ["nan"])


def _scalars(hint) -> set:
    if typing.get_origin(hint) is typing.Annotated:
        return _scalars(typing.get_args(hint)[0])
    if hint in (int, float):
        return {hint}
    return set().union(set(), *(_scalars(a) for a in typing.get_args(hint) if a is not Ellipsis))


def argv_for(command: str, option: str, value: str) -> list[str]:
    """The command with its required options filled in and ``option`` set to ``value``."""
    argv = [command]
    for field in dataclasses.fields(_commands()[command]):
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and option_name(field.name) != option:
            name = [] if field.name in POSITIONAL else [option_name(field.name)]
            argv += [*name, REQUIRED[field.name]]
    return argv + [option, *(["4", value] if option.endswith("offsets") else [value])]


CASES = [(command, name, value) for command, config in _commands().items()
         for name, hint in numeric_options(config) for value in out_of_range(hint)]


def test_every_numeric_option_declares_bounds():
    undeclared = [f"{command} {name}" for command, config in _commands().items()
                  for name, hint in numeric_options(config) if not bounds(hint)]
    assert not undeclared, f"numeric options without declared bounds: {undeclared}"
    assert len(CASES) > 60  # the walk reaches every command's options, nested ones included


@pytest.mark.parametrize(("command", "option", "value"), CASES, ids=[f"{c} {o} {v}" for c, o, v in CASES])
def test_out_of_range_value_is_one_error_line(command, option, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, here or anywhere
    argv = argv_for(command, option, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("wam: error: ") and option in lines[0], err
    number = float(value)
    assert ("finite" in lines[0]) if math.isnan(number) else value in lines[0] or str(number) in lines[0], lines[0]
    assert not any(tmp_path.iterdir())


def test_an_explicit_chunk_length_is_never_replaced_by_the_default():
    """K = 0 used to run silently with the model's K = 8; a policy now refuses it (the CLI refuses it earlier)."""
    from wam.anatomy import WAMSpec
    from wam.deployment import ChunkedPolicy
    from wam.model import ModelConfig, WorldActionModel

    model = WorldActionModel(ModelConfig(spec=WAMSpec(substrate="none", coupling="none"), future_offsets=(),
                                         observation_shapes={"observation.state": [4]}, d_model=32, n_layers=1,
                                         n_heads=2))
    assert model.config.n_action_steps != 1 and ChunkedPolicy(model, 1).n_action_steps == 1
    with pytest.raises(ValueError, match="K=0 must lie in"):
        ChunkedPolicy(model, 0)


@pytest.mark.parametrize("entry", ["bogus=1", "inference-steps", "inference-steps=two", "decode=maybe"])
def test_malformed_sweep_is_one_error_line(entry, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--run", "no-run", "--tasks", "reach-v3", "--episodes", "1", "--out", "o", "--sweep",
                 entry]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("wam: error: --sweep") and entry in lines[0], lines
    assert not any(tmp_path.iterdir())
