"""Recipe data (YAML, JSON, a manifest) to the frozen config dataclasses, driven by type hints.

Every stage declares its settings as a frozen dataclass with typed fields; this module turns a
mapping into those objects by reading the hints, so a new setting needs no loader code. It checks
what the dataclasses cannot: an unknown key is refused naming its full dotted path and the closest
valid key, a wrong type names the key, the value and the type allowed. The dataclasses'
`__post_init__` validation still runs on every object built, and whatever it raises comes back as
a ConfigError naming where in the recipe the object is.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from fastdraft_dag.core.errors import ConfigError

T = TypeVar("T")

# PyYAML reads YAML 1.1, where `3e-4` (no dot) is a string, not a float; a float setting accepts it.
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields and their resolved types (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe(tp: Any) -> str:
    """A type as a recipe author reads it: `list of int`, `float or null`, `mapping str -> float`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin is tuple:
        return f"list of {describe(args[0])}"
    if origin is dict:
        return f"mapping {describe(args[0])} -> {describe(args[1])}"
    return getattr(tp, "__name__", str(tp))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _wrong(path: str, value: Any, tp: Any) -> ConfigError:
    shown = type(value).__name__ if not isinstance(value, Mapping) else "mapping"
    return ConfigError(f"{path or 'recipe'}: {value!r} is a {shown}, expected {describe(tp)}")


def _check_keys(cls: type, data: Any, path: str) -> None:
    if not isinstance(data, Mapping):
        raise _wrong(path, data, cls)
    valid = list(field_types(cls))
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"; did you mean {_join(path, close[0])!r}?" if close else ""
            raise ConfigError(
                f"{_join(path, key)}: unknown setting{hint} (valid keys of "
                f"{path or 'the recipe'}: {', '.join(valid)})"
            )


def _construct(cls: type[T], path: str, make: typing.Callable[[], T]) -> T:
    """Run the dataclass's own validation; its complaint comes back naming where it was."""
    try:
        return make()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{path or 'recipe'} ({cls.__name__}): {e}") from e


def _scalar(tp: type, value: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise _wrong(path, value, tp)


def convert(tp: Any, value: Any, path: str) -> Any:
    """`value` as type `tp` (lists become tuples, mappings dataclasses), or a ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        if inner not in (bool, int, float, str):
            return convert(inner, value, path)
        try:
            return _scalar(inner, value, path)
        except ConfigError:
            raise _wrong(path, value, tp) from None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _wrong(path, value, tp)
        return tuple(convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong(path, value, tp)
        return {
            _key(args[0], k, path): convert(args[1], v, _join(path, k)) for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    return _scalar(tp, value, path)


def _key(tp: Any, key: Any, path: str) -> Any:
    """A mapping key; JSON (a manifest) keeps `{0.0: 0.7}` as `{"0.0": 0.7}`, so text is parsed."""
    if tp in (int, float) and isinstance(key, str):
        try:
            return tp(key)
        except ValueError:
            pass
    return convert(tp, key, f"{path} key {key!r}")


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if isinstance(value, cls):
        return value
    if isinstance(value, str) and hasattr(cls, "parse"):
        return _construct(cls, path, lambda: cls.parse(value))
    return build(cls, value, path)


def build(cls: type[T], data: Any, path: str = "") -> T:
    """A `cls` from a mapping: unknown keys refused, each value converted by its field's type."""
    _check_keys(cls, data, path)
    types_ = field_types(cls)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(
            f"{path or 'recipe'}: missing required {', '.join(_join(path, m) for m in missing)} "
            f"({'; '.join(f'{m}: {describe(types_[m])}' for m in missing)})"
        )
    values = {k: convert(types_[k], v, _join(path, k)) for k, v in data.items()}
    if hasattr(cls, "parse"):  # its parse may normalize or check more than __post_init__ does
        return _construct(cls, path, lambda: cls.parse(values))
    return _construct(cls, path, lambda: cls(**values))


def override(obj: T, data: Any, path: str = "") -> T:
    """`obj` with the settings in `data` replaced; nested sections merge, everything else
    (lists, mappings such as `temperatures`) is replaced whole, as a recipe author expects."""
    cls = type(obj)
    _check_keys(cls, data, path)
    types_ = field_types(cls)
    changes = {}
    for key, value in data.items():
        tp, sub = types_[key], _join(path, key)
        if is_section(tp) and isinstance(value, Mapping):
            changes[key] = override(getattr(obj, key), value, sub)
        else:
            changes[key] = convert(tp, value, sub)
    return _construct(cls, path, lambda: dataclasses.replace(obj, **changes))


def is_section(tp: Any) -> bool:
    """A nested settings block (merged key by key), not an item such as a source (replaced)."""
    return dataclasses.is_dataclass(tp) and not hasattr(tp, "parse")


def to_data(obj: Any) -> Any:
    """Plain data (what YAML and JSON hold) that `build` turns back into an equal object."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_data(v) for k, v in obj.items()}
    return obj
