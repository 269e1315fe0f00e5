"""Targets as partitions: one dynamic partition per registered target.

The key is the target's `target_key` (targets/registry.py) and its artifact directory. Every asset
downstream of the target is partitioned by it; filtered_corpora is shared by all targets.
"""

import dagster as dg

TARGETS = dg.DynamicPartitionsDefinition(name="targets")

# The per-target chain, in order (every asset partitioned by TARGETS); filtered_corpora is shared
# and rematerializes on its own.
TARGET_CHAIN = (
    "tokenized_shards",
    "synthetic_kd_dataset",
    "pretrained_draft",
    "aligned_draft",
    "eagle3_head",
    "openvino_ir",
    "benchmark_tables",
)
