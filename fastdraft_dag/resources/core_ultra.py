"""Dagster resource describing the OpenVINO device a run benchmarks on (Intel Core Ultra et al.).

The device, precision hint and thread count are run configuration, not code: the same graph
benchmarks CPU, integrated GPU or NPU. Work is delegated to the plain library modules so they
stay importable and testable without Dagster.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from fastdraft_dag.evaluation import live as sd_benchmark
from fastdraft_dag.evaluation import offline as offline_eval
from fastdraft_dag.evaluation.live import LiveJob, LiveResult
from fastdraft_dag.evaluation.offline import OfflineJob, OfflineRow
from fastdraft_dag.openvino import export as openvino_export
from fastdraft_dag.openvino import genai as sd_modes

DEVICES = sd_modes.DEVICES


class CoreUltraResource(dg.ConfigurableResource):
    """OpenVINO device settings shared by export and speculative-decoding benchmark assets."""

    device: str = "CPU"
    precision_hint: str = "f32"
    threads: int = 0

    def available_devices(self) -> list[str]:
        """Devices the OpenVINO runtime sees on this machine (e.g. CPU, GPU.0, NPU)."""
        return sd_modes.available_devices()

    def validate(self) -> None:
        """Fail early, naming the device and listing the available ones, when it is not here."""
        sd_modes.check_device(self.device, self.available_devices())

    def benchmark_live(self, job: LiveJob) -> LiveResult:
        """``live.benchmark_live`` of ``job`` on this resource's device, precision hint and
        threads."""
        self.validate()
        return sd_benchmark.benchmark_live(
            job,
            device=self.device,
            precision_hint=self.precision_hint,
            threads=self.threads or None,
        )

    def evaluate_offline(self, job: OfflineJob) -> list[OfflineRow]:
        """``offline.evaluate_offline`` with every draft IR compiled on this resource's device.

        ``job.threads`` is the profile's (PyTorch and IR scoring share the CPU the same way).
        """
        self.validate()
        return offline_eval.evaluate_offline(job, device=self.device)

    def export_ir(self, model_dir: Path, out_dir: Path, weight_format: str) -> dict:
        """Export an IR (device independent; compiled per device at load time).

        `openvino_ir` exports through this method and checks each IR on ``self.device``.
        """
        return openvino_export.export_ir(model_dir, out_dir, weight_format)
