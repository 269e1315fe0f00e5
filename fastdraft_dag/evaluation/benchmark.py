"""The `benchmark_tables` runner: offline acceptance, live decoding modes, the release.

Takes plain paths and configs and a *device* (anything with ``device``, ``evaluate_offline`` and
``benchmark_live``: the Core Ultra resource in the graph, a fake in tests), so the whole
benchmark-to-release path runs without Dagster. It writes ``results.json`` (every row, the best
fixed k, the chosen mode), ``results.md``, the figures and the ``release/`` folder, and returns
a typed ``BenchmarkResult``; the asset only records rows, metadata and checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastdraft_dag.core.files import write_json_atomic, write_text_atomic
from fastdraft_dag.evaluation.config import BenchConfig
from fastdraft_dag.evaluation.live import (
    Divergence,
    LiveJob,
    LiveResult,
    LiveRow,
    Sample,
    choose_k,
)
from fastdraft_dag.evaluation.metrics import mbsu, param_bytes_ratio
from fastdraft_dag.evaluation.modes import DRAFTED, EAGLE3, ModeChoice, choose_mode
from fastdraft_dag.evaluation.offline import OfflineJob, OfflineRow
from fastdraft_dag.evaluation.results import bench_prompt_set, write_release
from fastdraft_dag.openvino.genai import PROMPT_LOOKUP_NGRAM
from fastdraft_dag.openvino.ir_scoring import bytes_per_param
from fastdraft_dag.reporting import plots
from fastdraft_dag.reporting.model_card import release_card
from fastdraft_dag.reporting.tables import render_benchmark

RESULTS_JSON, RESULTS_MD, RELEASE_DIR = "results.json", "results.md", "release"


class BenchDevice(Protocol):
    """Where the benchmark runs: the OpenVINO device every IR is compiled on."""

    device: str

    def evaluate_offline(self, job: OfflineJob) -> list[OfflineRow]: ...

    def benchmark_live(self, job: LiveJob) -> LiveResult: ...


@dataclass(frozen=True, kw_only=True)
class BenchmarkJob:
    """What one benchmark reads: the target, the drafts of the recipe's kinds (the aligned
    standalone draft, the EAGLE-3 head with its offline estimate), their IRs and the settings."""

    target_name: str
    target_dir: Path
    draft_dir: Path | None
    irs_dir: Path
    bench: BenchConfig
    draft_formats: tuple[str, ...]
    target_format: str
    threads: int
    lineage: Mapping[str, str] = field(default_factory=dict)
    base_model: str | None = None  # the target's hub id, for the release card's metadata
    license_id: str | None = None  # the target's license, which the draft inherits
    head_dir: Path | None = None  # the EAGLE-3 head (draft kind eagle3)
    head_offline: Mapping[str, Any] = field(default_factory=dict)  # its chained estimate

    @property
    def sd_ir(self) -> Path | None:
        if self.draft_dir is None:
            return None
        return self.irs_dir / f"draft-{self.bench.sd_draft_format}"

    @property
    def eagle3_ir(self) -> Path | None:
        if self.head_dir is None:
            return None
        return self.irs_dir / f"eagle3-{self.bench.sd_draft_format}"

    def release_draft(self, choice: ModeChoice) -> tuple[Path, Path]:
        """(IR, HF directory) the release ships: the kind of the chosen mode, else of the best
        drafted mode (shipped for comparison), else whichever kind was built."""
        best = choice.chosen if choice.chosen.mode in DRAFTED else choice.best_draft
        eagle3 = self.head_dir is not None and (
            self.draft_dir is None or (best is not None and best.mode == EAGLE3)
        )
        if eagle3:
            return self.eagle3_ir, self.head_dir
        return self.sd_ir, self.draft_dir

    @property
    def target_ir(self) -> Path:
        return self.irs_dir / f"target-{self.target_format}"

    @property
    def reference_ir(self) -> Path | None:
        if not self.bench.reference_draft:
            return None
        return self.irs_dir / f"reference-draft-{self.bench.sd_draft_format}"


@dataclass(frozen=True)
class PromptSets:
    """The offline and live prompt sets, built (and refused when empty) before any model loads."""

    offline: list[dict]
    live: list[dict]
    malformed: dict[str, int]


def prompt_sets(bench: BenchConfig) -> PromptSets:
    offline, malformed = bench_prompt_set(bench.prompts_per_family, bench.prompt_files)
    live, _ = bench_prompt_set(
        bench.sd_prompts_per_family,
        bench.prompt_files,
        per_user_task=bench.sd_prompts_per_family,
        setting="bench.sd_prompts_per_family",
    )
    return PromptSets(offline, live, malformed)


@dataclass(frozen=True, kw_only=True)
class BenchmarkResult:
    """Everything the benchmark measured and chose; ``results.json`` is its serialized form."""

    offline: list[OfflineRow]
    wallclock: list[LiveRow]
    best_k: int
    choice: ModeChoice
    device: str
    eagle3_offline: Mapping[str, Any] = field(default_factory=dict)
    divergences: list[Divergence] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    malformed_prompts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "offline": self.offline,
            "wallclock": self.wallclock,
            "best_k": self.best_k,
            "choice": self.choice.to_dict(),
            "device": self.device,
            "eagle3_offline": dict(self.eagle3_offline),
            "divergences": self.divergences,
            "samples": self.samples,
            "malformed_prompts": self.malformed_prompts,
        }

    @classmethod
    def load(cls, artifact_dir: Path) -> BenchmarkResult:
        """Read ``results.json`` (a benchmark from before the mode choice gets it computed)."""
        data = json.loads((Path(artifact_dir) / RESULTS_JSON).read_text())
        wall = data["wallclock"]
        choice = data.get("choice")
        return cls(
            offline=data["offline"],
            wallclock=wall,
            best_k=int(data["best_k"]),
            choice=ModeChoice.from_dict(choice) if choice else choose_mode(wall),
            device=data.get("device", "?"),
            eagle3_offline=data.get("eagle3_offline", {}),
            divergences=data.get("divergences", []),
            samples=data.get("samples", []),
            malformed_prompts=data.get("malformed_prompts", {}),
        )

    def metrics(self) -> dict[str, Any]:
        """The manifest's headline figures."""
        return {
            "best_k": self.best_k,
            "release_mode": self.choice.chosen.label,
            "release_speedup": self.choice.chosen.speedup,
            "sd_pays": self.choice.sd_pays,
            "rows_offline": len(self.offline),
            "rows_live": len(self.wallclock),
        }


def _live(job: BenchmarkJob, prompts: list[dict], device: BenchDevice) -> LiveResult:
    b = job.bench
    live = LiveJob(
        job.target_ir,
        job.sd_ir,
        prompts=prompts,
        tokenizer_dir=job.target_dir,
        max_new_tokens=b.sd_max_new_tokens,
        ks=list(b.sd_ks),
        margin_model_dir=job.target_dir,
        prompt_lookup=b.prompt_lookup,
        reference_draft_ir=job.reference_ir,
        confidence_thresholds=list(b.sd_confidence_thresholds),
        eagle3_ir=job.eagle3_ir,
    )
    return device.benchmark_live(live)


def head_estimate(job: BenchmarkJob) -> dict[str, Any]:
    """The head's offline chain estimate with MBSU per chain length: the bytes a draft step
    really reads (fc, its decoder layer, norm and draft-vocabulary LM head at the head IR's
    precision; not the target's embedding rows) over the target's per step."""
    est = dict(job.head_offline)
    if job.head_dir is None or not est.get("chains"):
        return est
    r = param_bytes_ratio(
        job.head_dir,
        job.target_dir,
        bytes_per_param(job.bench.sd_draft_format),
        bytes_per_param(job.target_format),
    )
    ks = sorted(int(k[len("tau_k") :]) for k in est if k.startswith("tau_k"))
    return {**est, "r": r, **{f"mbsu_k{k}": mbsu(est[f"tau_k{k}"], k, r) for k in ks}}


def run_benchmark(
    job: BenchmarkJob, prompts: PromptSets, device: BenchDevice, out: Path
) -> BenchmarkResult:
    """Measure offline and live, choose the release's mode, and write results and release."""
    out = Path(out)
    b = job.bench
    offline: list[OfflineRow] = []
    if job.draft_dir is not None:  # the standalone draft's acceptance from target/draft logits
        offline_job = OfflineJob(
            job.target_dir,
            job.draft_dir,
            prompts=prompts.offline,
            max_new_tokens=b.offline_max_new_tokens,
            ks=list(b.ks),
            threads=job.threads,
            draft_irs={f: job.irs_dir / f"draft-{f}" for f in job.draft_formats},
            target_precision=job.target_format,
        )
        offline = device.evaluate_offline(offline_job)
    live = _live(job, prompts.live, device)
    result = BenchmarkResult(
        offline=offline,
        wallclock=live["rows"],
        best_k=int(live.get("best_k") or choose_k(live["rows"])),
        choice=choose_mode(live["rows"]),
        device=device.device,
        eagle3_offline=head_estimate(job),
        divergences=live.get("divergences", []),
        samples=live.get("samples", []),
        malformed_prompts=prompts.malformed,
    )
    tables = result.to_json()
    write_json_atomic(out / RESULTS_JSON, tables)
    summary = render_benchmark(tables)
    write_text_atomic(out / RESULTS_MD, summary)
    figures = plots.benchmark_plots(out, offline, result.wallclock, b.sd_draft_format)
    card = release_card(
        target=job.target_name,
        draft_precision=b.sd_draft_format,
        choice=tables["choice"],
        device=result.device,
        summary_md=summary,
        images=plots.BENCHMARK_PLOTS,
        lineage=job.lineage,
        prompt_lookup_ngram=PROMPT_LOOKUP_NGRAM,
        base_model=job.base_model,
        license_id=job.license_id,
    )
    files = {plots.BENCHMARK_PLOTS[alt]: path for alt, path in figures.items()}
    ir, hf_dir = job.release_draft(result.choice)
    write_release(
        out / RELEASE_DIR,
        ir,
        result.choice,
        card,
        files,
        hf_dir,
        PROMPT_LOOKUP_NGRAM,
    )
    return result
