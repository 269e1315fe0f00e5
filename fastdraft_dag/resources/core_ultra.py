"""Dagster resource describing the OpenVINO device a run benchmarks on (Intel Core Ultra et al.).

The device, precision hint and thread count are run configuration, not code: the same graph
benchmarks CPU, integrated GPU or NPU. Work is delegated to the plain library modules so they
stay importable and testable without Dagster.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from fastdraft_dag import openvino_export, sd_benchmark

DEVICES = ("CPU", "GPU", "NPU", "AUTO")


class CoreUltraResource(dg.ConfigurableResource):
    """OpenVINO device settings shared by export and speculative-decoding benchmark assets."""

    device: str = "CPU"
    precision_hint: str = "f32"
    threads: int = 0

    def available_devices(self) -> list[str]:
        """Devices the OpenVINO runtime sees on this machine (e.g. CPU, GPU.0, NPU)."""
        import openvino as ov

        return list(ov.Core().available_devices)

    def validate(self) -> None:
        """Fail early, naming the device, when it is not present (e.g. GPU asked on a CPU box).

        "GPU" matches "GPU.0"/"GPU.1"; AUTO only needs some device to exist.
        """
        available = self.available_devices()
        base = self.device.split(".")[0].split(":")[0].upper()
        if base not in DEVICES:
            raise ValueError(f"unknown OpenVINO device {self.device!r}; expected one of {DEVICES}")
        if base == "AUTO":
            ok = bool(available)
        else:
            ok = any(d == self.device or d.split(".")[0] == self.device for d in available)
        if not ok:
            raise RuntimeError(
                f"OpenVINO device {self.device!r} is not available here; found {available}"
            )

    def benchmark_sd(
        self,
        target_ir: Path,
        draft_ir: Path,
        prompts: list[dict],
        tokenizer_dir: Path,
        max_new_tokens: int,
        k: int,
        margin_model_dir: Path | None = None,
    ) -> dict:
        """Run ``sd_benchmark.benchmark_sd`` on this resource's device, hint and threads."""
        self.validate()
        return sd_benchmark.benchmark_sd(
            target_ir,
            draft_ir,
            prompts,
            tokenizer_dir,
            max_new_tokens,
            k,
            device=self.device,
            precision_hint=self.precision_hint,
            threads=self.threads or None,
            margin_model_dir=margin_model_dir,
        )

    def export_ir(self, model_dir: Path, out_dir: Path, weight_format: str) -> dict:
        """Export an IR (device independent; compiled per device at load time)."""
        return openvino_export.export_ir(model_dir, out_dir, weight_format)
