"""Targets as partitions: one dynamic partition per registered target.

The key is the target's `target_key` (targets/registry.py) and its artifact directory. Every asset
downstream of the target is partitioned by it; filtered_corpora is shared by all targets.
"""

import dagster as dg

TARGETS = dg.DynamicPartitionsDefinition(name="targets")
