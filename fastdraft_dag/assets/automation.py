"""When assets rematerialize: the retraining window, applied to every materializable asset.

On the first automation tick after the cron tick, a partition is requested if, since it was last
requested or updated, a dependency changed (target_model's revision; an upstream materialization
from another run), its own code version changed, or the partition appeared. A chain is requested
together (`will_be_requested` carries the change down in the same tick). Between windows nothing
starts: a code-version bump of a training asset makes it stale at once in the UI, but training
waits for the window or for someone to materialize it. The `retrain_window` sensor that evaluates
these conditions is in schedules.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg


def retrain_in_window(cron: str, timezone: str = "UTC") -> dg.AutomationCondition:
    """Request a partition at the window if something it depends on changed since it last ran."""
    ac = dg.AutomationCondition
    changed = (
        ac.newly_missing() | ac.any_deps_updated() | ac.code_version_changed()
    ).since_last_handled()
    return (
        ac.cron_tick_passed(cron, timezone)
        & changed
        & ~ac.any_deps_missing()
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
        & ac.all_deps_blocking_checks_passed()
    ).with_label(f"retrain_in_window({cron}, {timezone})")


def with_automation(assets: Iterable[Any], condition: dg.AutomationCondition) -> Sequence[Any]:
    """The same assets with `condition` on every materializable one; the observable source
    (target_model) stays as it is.

    Applied with `dg.map_asset_specs`, the public form of what `Definitions.map_asset_specs` does:
    the Definitions method is a preview API in Dagster 1.13 (a warning at every load of the code
    location) and refuses a definitions object holding a SourceAsset, which target_model is.
    """
    automated, others = [], []
    for a in assets:
        materializable = isinstance(a, dg.AssetsDefinition) and a.is_materializable
        (automated if materializable else others).append(a)

    def automate(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(automation_condition=condition)

    return [*dg.map_asset_specs(automate, automated), *others]
