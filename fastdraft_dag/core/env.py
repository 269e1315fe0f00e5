"""Numbers read from FASTDRAFT_* environment variables, refused by name when malformed.

A bad value used to surface as `int('x')` deep in a resource; here it is a ConfigError naming
the variable, raised when the Definitions are built (before anything runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastdraft_dag.core.errors import ConfigError


def env_int(name: str, default: int, minimum: int, env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer >= {minimum}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: expected an integer >= {minimum}")
    return value


def env_float(
    name: str, default: float, minimum: float, env: Mapping[str, str] = os.environ
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number >= {minimum}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name}={raw!r}: expected a number >= {minimum}")
    return value
