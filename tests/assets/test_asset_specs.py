"""A snapshot of every asset spec of the default profile's code location.

Like dagster-open-platform's definitions snapshot: a change to a key, a dependency, a group, a
kind, a partitioning, an automation condition, a code version, tags, owners or checks shows up
as a diff of tests/assets/asset_specs.json in review, not as a surprise in the UI. Rewrite it on
purpose with `FASTDRAFT_UPDATE_SNAPSHOT=1 pytest tests/assets/test_asset_specs.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fastdraft_dag.core.settings import declarations
from fastdraft_dag.definitions import build_defs

SNAPSHOT = Path(__file__).with_name("asset_specs.json")
KIND = "dagster/kind/"  # kinds are stored as tags too; they have their own field


def _partitions(spec: dg.AssetSpec) -> dict[str, Any] | None:
    part = spec.partitions_def
    if part is None:
        return None
    if isinstance(part, dg.DynamicPartitionsDefinition):
        return {"type": type(part).__name__, "name": part.name}
    return {"type": type(part).__name__, "description": str(part)}


def _condition(spec: dg.AssetSpec) -> str | None:
    cond = spec.automation_condition
    return None if cond is None else (cond.get_label() or str(cond))


def spec_rows(defs: dg.Definitions) -> list[dict[str, Any]]:
    """One sorted, path-free row per asset: what the UI and the automation see of it."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, list[str]] = {}
    for check in graph.asset_check_keys:
        checks.setdefault(check.asset_key.to_user_string(), []).append(check.name)
    rows = []
    for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string()):
        key = spec.key.to_user_string()
        rows.append(
            {
                "key": key,
                "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
                "group": spec.group_name,
                "kinds": sorted(spec.kinds),
                "partitions": _partitions(spec),
                "automation_condition": _condition(spec),
                "code_version": spec.code_version,
                "owners": sorted(spec.owners),
                "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith(KIND)},
                "checks": sorted(checks.get(key, [])),
                "materializable": graph.get(spec.key).is_materializable,
            }
        )
    return rows


@pytest.fixture
def defs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dg.Definitions:
    """The default profile as `dagster dev` serves it with no FASTDRAFT_* variable set."""
    for f in declarations():
        monkeypatch.delenv(f.metadata["env"], raising=False)
    return build_defs("default", str(tmp_path / "artifacts"))


def test_asset_specs_match_the_snapshot(defs: dg.Definitions) -> None:
    text = json.dumps(spec_rows(defs), indent=1, sort_keys=True) + "\n"
    if os.environ.get("FASTDRAFT_UPDATE_SNAPSHOT") == "1":
        tmp = SNAPSHOT.with_name(f".{SNAPSHOT.name}.tmp")
        tmp.write_text(text)
        tmp.replace(SNAPSHOT)
    assert SNAPSHOT.read_text() == text, (
        "asset specs changed: review the diff, then FASTDRAFT_UPDATE_SNAPSHOT=1 "
        "pytest tests/assets/test_asset_specs.py"
    )


def test_the_snapshot_is_portable(defs: dg.Definitions, tmp_path: Path) -> None:
    """No machine's paths or clock in it: the same on every checkout."""
    text = json.dumps(spec_rows(defs))
    for local in (str(tmp_path), str(Path.home()), str(Path(__file__).resolve().parents[2])):
        assert local not in text


def test_every_materializable_asset_waits_for_the_window(defs: dg.Definitions) -> None:
    """The automation policy reaches every materializable asset and skips the source."""
    rows = {r["key"]: r for r in spec_rows(defs)}
    assert rows["target_model"]["automation_condition"] is None
    built = [r for r in rows.values() if r["materializable"]]
    assert len(built) == len(rows) - 1
    assert {r["automation_condition"] for r in built} == {"retrain_in_window(0 2 * * *, UTC)"}
