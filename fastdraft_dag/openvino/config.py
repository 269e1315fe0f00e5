"""Settings of the OpenVINO export."""

from __future__ import annotations

from dataclasses import dataclass

from fastdraft_dag.core.errors import ConfigError


@dataclass(frozen=True)
class ExportConfig:
    # Every draft precision is exported and scored offline: quantization can cost acceptance.
    draft_formats: tuple[str, ...] = ("fp16", "int8", "int4")
    # the target IR's precision (fp16, int8, int4) for the live benchmark
    target_format: str = "int8"

    def __post_init__(self) -> None:
        allowed = ("fp32", "fp16", "int8", "int4")  # openvino.export.WEIGHT_FORMATS
        bad = [f for f in (*self.draft_formats, self.target_format) if f not in allowed]
        if bad or not self.draft_formats:
            raise ConfigError(
                f"export: formats {bad or list(self.draft_formats)} not allowed; draft_formats "
                f"(non-empty) and target_format take {list(allowed)}"
            )
