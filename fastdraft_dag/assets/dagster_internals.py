"""Every private Dagster API the project uses, in one place, so an upgrade has one file to check.

Pinned with dagster==1.13.27. Why each is needed: the data-version tag of an observation
(reading a target's observed revision back), the stale-status resolver and asset graph view
(`fastdraft run --stale-only` computes what the UI's "Unsynced" shows), and the cron validator
(a bad FASTDRAFT_RETRAIN_CRON must fail the code location with a clear error).
"""

from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    DATA_VERSION_TAG,
    CachingStaleStatusResolver,
    StaleStatus,
)
from dagster._utils.schedules import is_valid_cron_string

__all__ = [
    "DATA_VERSION_TAG",
    "AssetGraphView",
    "CachingStaleStatusResolver",
    "StaleStatus",
    "TemporalContext",
    "is_valid_cron_string",
]
