"""What is stale for one target: the UI's "Unsynced", for `fastdraft run --stale-only`.

Every asset has a `code_version`; data versions come from artifact manifests and the target's
observed revision, so Dagster's stale status reflects real changes.
"""

from __future__ import annotations

import datetime

import dagster as dg

from fastdraft_dag.assets.dagster_internals import (
    AssetGraphView,
    CachingStaleStatusResolver,
    StaleStatus,
    TemporalContext,
)


def stale_asset_keys(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    partition_key: str,
    downstream: bool = True,
) -> list[dg.AssetKey]:
    """Materializable assets that are stale or missing for this target (the UI's "Unsynced"),
    and, with `downstream`, everything below them.

    Partitioned assets are judged at `partition_key`, filtered_corpora as itself. Dagster marks
    an asset stale when its own code version or an input's data version changed; its children
    turn stale only once it has rematerialized. Rebuilding them in the same run is what a
    rematerialization leads to anyway, so `downstream` includes them at once.
    """
    graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(
            effective_dt=datetime.datetime.now(datetime.UTC), last_event_id=None
        ),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance, graph, view)
    out: list[dg.AssetKey] = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        pk = partition_key if node.is_partitioned else None
        stale = resolver.get_status(key, pk) in (StaleStatus.STALE, StaleStatus.MISSING)
        if stale or (downstream and any(parent in out for parent in node.parent_keys)):
            out.append(key)
    return out
