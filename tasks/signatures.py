"""Checking plain config values against Python signatures and annotations, before anything is built.

A config entry with ``_target_`` must import, name only arguments its target accepts (unless it takes
``**kwargs``), and give each a value its annotation admits: :func:`check_target`. The annotations
understood are the ones constructors here use (``int``, ``float``, ``bool``, ``str``, ``None``, unions,
``Literal``, lists/tuples/sequences and mappings, classes built by a nested ``_target_``); anything
else is accepted. ``ranges`` adds value ranges that annotations cannot say, keyed by the dotted key.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union

from zoo.registry import ZooError

# dotted config key -> (a test of the value, what the test expects in words)
Ranges = Mapping[str, tuple[Callable[[Any], bool], str]]


class ConfigError(ZooError):
    """A config key or value that cannot work; the message names it, says what was expected and how to fix it."""


def describe(tp: Any) -> str:
    """An annotation in words for an error message: ``int | None`` -> "an integer or null"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):  # literals merge into one list: "one of 64, 32, '32-true' or null"
        literals = [v for a in args if typing.get_origin(a) is Literal for v in typing.get_args(a)]
        rest = [describe(a) for a in args if typing.get_origin(a) is not Literal]
        return " or ".join(dict.fromkeys([*([describe(Literal[tuple(literals)])] if literals else []), *rest]))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
    if tp in names:
        return names[tp]
    if origin in (list, tuple, Sequence, Iterable) or tp in (list, tuple):
        return "a list, e.g. [a, b]"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping, e.g. {a: 1}"
    return getattr(tp, "__name__", str(tp))


def conforms(value: Any, tp: Any) -> bool:
    """Whether a plain config value can be passed where ``tp`` is annotated (unknown constructs: yes)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return any(conforms(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, Iterable) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else Any
        return all(conforms(v, item) for v in value)
    if origin in (dict, Mapping) or tp is dict:
        return isinstance(value, dict)
    if isinstance(tp, type):  # a class: a config entry with _target_ builds it, or the value is one already
        return isinstance(value, tp) or isinstance(value, dict) and "_target_" in value
    return True


def close_matches(name: str, options: Iterable[str]) -> str:
    """" Did you mean: ...?" for the options that look like ``name``; empty when none does."""
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def check_value(key: str, value: Any, tp: Any, *, ranges: Ranges | None = None) -> None:
    """One config value against its annotation ``tp`` (and its range in ``ranges``, if any); entries with
    ``_target_`` inside it are checked against their own targets."""
    if not conforms(value, tp):
        raise ConfigError(f"{key}={value!r} ({type(value).__name__}) is not valid: expected {describe(tp)}. "
                          f"Set it on the command line as {key}=<value>.")
    rule = (ranges or {}).get(key)
    if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
        raise ConfigError(f"{key}={value!r} is out of range: expected {rule[1]}.")
    if isinstance(value, dict) and "_target_" in value:
        check_target(key, value, ranges=ranges)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, dict) and "_target_" in v:
                check_target(f"{key}[{i}]", v, ranges=ranges)


def check_signature(key: str, values: Mapping[str, Any], fn: Callable[..., Any], *, owner: str,
                    skip: Iterable[str] = (), ranges: Ranges | None = None) -> None:
    """``values`` against ``fn``'s keyword parameters: no unknown key (unless it takes ``**kwargs``), types."""
    params = {n: p for n, p in inspect.signature(fn).parameters.items() if n not in ("self", *skip)}
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that name types only imported for type checkers: check keys only
        hints = {}
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for name, value in values.items():
        if name.startswith("_") and name.endswith("_"):  # Hydra's _target_, _partial_, _convert_, ...
            continue
        if name not in params:
            if open_ended:
                continue
            raise ConfigError(f"{key}.{name} is not an argument of {owner}.{close_matches(name, accepted)} "
                              f"It accepts: {', '.join(accepted)}.")
        check_value(f"{key}.{name}", value, hints.get(name, Any), ranges=ranges)


def check_target(key: str, values: Mapping[str, Any], *, skip: Iterable[str] = (), ranges: Ranges | None = None) -> None:
    """A config entry with ``_target_``: the target imports, and the entry's keys and values fit its signature."""
    from hydra.utils import get_object

    target = values["_target_"]
    try:
        obj = get_object(target)
    except Exception as e:
        raise ConfigError(f"{key}._target_={target!r} cannot be imported ({str(e).splitlines()[0]}). "
                          "Check the dotted path (module.Class).") from None
    fn = obj.__init__ if inspect.isclass(obj) else obj
    if callable(fn):
        check_signature(key, values, fn, owner=target, skip=skip, ranges=ranges)
