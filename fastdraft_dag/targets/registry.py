"""The registered targets: partition key -> what the key means, kept under the artifact root.

Dagster's dynamic partitions hold only keys (`tiny-random`, `smollm2-135m-instruct`,
`org-model`). This registry says which target each key is (an embedded name, a local directory or
a hub id, at which revision), so an asset given a partition key can resolve its target, and the
CLI, the sensors and the UI all see the same list. One JSON file, rewritten atomically under a
file lock: two processes adding targets at once both land, and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.files import write_json_atomic
from fastdraft_dag.core.locks import exclusive_lock
from fastdraft_dag.targets.embedded import EMBEDDED
from fastdraft_dag.targets.resolve import (
    TINY_NAME,
    TargetError,
    check_target,
    target_key,
)

REGISTRY_FILE = "targets.json"
EMBEDDED_TARGETS = (*EMBEDDED, TINY_NAME)


class TargetRegistryError(InputError):
    """A registry request that cannot be honoured (duplicate, unknown key); the message says why."""


@dataclass(frozen=True)
class TargetSpec:
    """A target as the user named it; `key` is its partition key and artifact directory."""

    name: str  # embedded:..., an absolute local directory, or org/model on the hub
    revision: str = "main"  # hub branch, tag or commit; ignored for local and embedded targets

    @property
    def key(self) -> str:
        return target_key(self.name)

    @staticmethod
    def parse(name: str, revision: str = "main") -> TargetSpec:
        """Normalize a user's id: local directories become absolute, `@rev` splits off a hub id."""
        name = name.strip()
        if not name:
            raise TargetError("target: an empty id")
        path = Path(name).expanduser()
        if not name.startswith("embedded:") and path.exists():
            name = str(path.resolve())
        elif "@" in name and not name.startswith("embedded:"):
            name, revision = name.split("@", 1)
        return TargetSpec(name, revision or "main")


def embedded_spec(key: str) -> TargetSpec | None:
    """The embedded target whose key this is: those resolve anywhere, registered or not."""
    for name in EMBEDDED_TARGETS:
        if target_key(name) == key:
            return TargetSpec(name)
    return None


class TargetRegistry:
    """`<artifact root>/targets.json`: {"targets": {key: {name, revision}}}.

    Older files may carry `trust_remote_code`: it is ignored (no loader ever honoured it, and
    targets that need remote code are refused when resolved).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / REGISTRY_FILE

    def specs(self) -> dict[str, TargetSpec]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {
                key: TargetSpec(v["name"], v.get("revision", "main"))
                for key, v in data.get("targets", {}).items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise TargetRegistryError(
                f"target registry {str(self.path)!r} is unreadable ({type(exc).__name__}: {exc}); "
                "restore it, or delete it and register the targets again"
            ) from exc

    def keys(self) -> list[str]:
        return sorted(self.specs())

    def get(self, key: str) -> TargetSpec:
        """The target of a partition key: a registered one, else an embedded target's key."""
        spec = self.specs().get(key) or embedded_spec(key)
        if spec is None:
            known = ", ".join(self.keys()) or "none"
            raise TargetRegistryError(
                f"partition {key!r}: not a registered target (registered: {known}). Register it "
                f"with `fastdraft targets add <hub id or directory>`, or the register_targets "
                f"job; in the UI, add a registered key or an embedded one "
                f"({', '.join(target_key(n) for n in EMBEDDED_TARGETS)})."
            )
        return spec

    def add(
        self,
        spec: TargetSpec,
        *,
        exist_ok: bool = False,
        verify: Callable[[str, str], Any] = check_target,
    ) -> TargetSpec:
        """Register a target after checking it resolves; nothing is written if it does not.

        A second target with the same key is refused (the key names its artifacts), unless
        `exist_ok` and it is the very same target.
        """
        with self._locked():
            current = self.specs()
            existing = current.get(spec.key)
            if existing is not None:
                if exist_ok and existing == spec:
                    return existing
                raise TargetRegistryError(
                    f"target {spec.name!r}: key {spec.key!r} is already registered "
                    f"({existing.name} @ {existing.revision}); nothing was changed"
                )
            verify(spec.name, spec.revision)  # TargetError: unresolvable, nothing written
            current[spec.key] = spec
            self._write(current)
        return spec

    def ensure(self, spec: TargetSpec, verify: Callable[[str, str], Any] = check_target) -> None:
        """Register `spec` unless its key is there already (whatever it says): the profile's target."""
        if spec.key not in self.specs():
            # TargetRegistryError: registered by a concurrent process in the meantime.
            with contextlib.suppress(TargetRegistryError):
                self.add(spec, verify=verify)

    def _write(self, specs: dict[str, TargetSpec]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = {
            "targets": {k: asdict(v) for k, v in sorted(specs.items())},
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(self.path, data)

    def _locked(self) -> AbstractContextManager[None]:
        return exclusive_lock(self.root / f".{REGISTRY_FILE}.lock")
