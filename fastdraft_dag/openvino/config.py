"""Settings of the OpenVINO export."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExportConfig:
    # Every draft precision is exported and scored offline: quantization can cost acceptance.
    draft_formats: tuple[str, ...] = ("fp16", "int8", "int4")
    # the target IR's precision (fp16, int8, int4) for the live benchmark
    target_format: str = "int8"
