"""Numbers read from FASTDRAFT_* environment variables, refused by name when malformed.

A bad value used to surface as `int('x')` deep in a resource; here it is a ConfigError naming
the variable, raised when the Definitions are built (before anything runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastdraft_dag.core.errors import ConfigError


def _number(name: str, default: float, minimum: float, kind: type, env: Mapping[str, str]):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    what = "an integer" if kind is int else "a number"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected {what} >= {minimum}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name}={raw!r}: expected {what} >= {minimum}")
    return value


def env_int(name: str, default: int, minimum: int, env: Mapping[str, str] = os.environ) -> int:
    return _number(name, default, minimum, int, env)


def env_float(
    name: str, default: float, minimum: float, env: Mapping[str, str] = os.environ
) -> float:
    return _number(name, default, minimum, float, env)
