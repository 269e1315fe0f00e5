"""`fastdraft bench`: any draft against any target on any prompts, without the graph.

A user with a draft from elsewhere (a Hugging Face directory, a release folder of ours, or just a
draft IR) and their own prompt files wants one command, as with Spec-Bench or lm-eval, not a
rebuilt graph. This runs the same offline and live measurements as `benchmark_tables`, with the
same prompt rendering and tables, and marks its DuckDB rows as ad-hoc (`run_kind = 'adhoc'`) so
they never become a graph run's baseline. IRs it has to export are cached under the root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.core.files import sha256_file
from fastdraft_dag.core.tokenizers import TOKENIZER_FILES, require_same_tokens
from fastdraft_dag.draft.eagle3 import is_eagle3_dir
from fastdraft_dag.evaluation.benchmark import BenchDevice
from fastdraft_dag.evaluation.live import LiveJob, LiveResult, choose_k
from fastdraft_dag.evaluation.modes import choose_mode
from fastdraft_dag.evaluation.offline import OfflineJob, OfflineRow
from fastdraft_dag.evaluation.results import wallclock_db_rows
from fastdraft_dag.openvino.export import export_ir
from fastdraft_dag.prompts.eval_sets import load_prompts_jsonl
from fastdraft_dag.prompts.overlap import overlap_with_eval
from fastdraft_dag.storage.artifacts import stable_hash
from fastdraft_dag.storage.tables import record_rows

Log = Callable[[str], None]
ADHOC = "adhoc"


@dataclass(frozen=True)
class AdhocDraft:
    """Where a draft's weights (`hf_dir`) and IR (`ir_dir`) are; either may be missing."""

    path: Path
    hf_dir: Path | None
    ir_dir: Path | None

    @property
    def tokenizer_dir(self) -> Path:
        return self.hf_dir or self.ir_dir or self.path


def locate_draft(path: Path) -> AdhocDraft:
    """An HF directory, a release folder (HF files at its root, `draft-ir/`) or a draft IR."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"--draft {path}: not a directory")
    if is_eagle3_dir(path):
        raise ValueError(
            f"--draft {path}: an EAGLE-3 head (a release whose chosen mode is eagle3); "
            "`fastdraft bench` scores standalone drafts: pass the aligned_draft artifact"
        )
    hf = path if (path / "config.json").is_file() and any(path.glob("*.safetensors")) else None
    ir = next((p for p in (path, path / "draft-ir") if (p / "openvino_model.xml").is_file()), None)
    if hf is None and ir is None:
        raise ValueError(
            f"--draft {path}: neither a Hugging Face model (config.json + *.safetensors), a "
            "release folder (those plus draft-ir/) nor an OpenVINO IR (openvino_model.xml)"
        )
    if not any((path / f).is_file() for f in TOKENIZER_FILES[:2]) and not (
        ir and (ir / "tokenizer.json").is_file()
    ):
        raise ValueError(f"--draft {path}: no tokenizer files to check against the target's")
    return AdhocDraft(path, hf, ir)


def _export_cached(model_dir: Path, cache: Path, weight_format: str, log: Log) -> Path:
    """An IR of `model_dir`, exported once into `cache` (export_ir writes atomically)."""
    if not (cache / "openvino_model.xml").is_file():
        log(f"exporting {model_dir} as {weight_format} IR into {cache}")
        export_ir(model_dir, cache, weight_format)
    return cache


@dataclass(frozen=True, kw_only=True)
class AdhocJob:
    """One ad-hoc benchmark: the target, the draft, the prompts and what to measure."""

    target_name: str
    target_dir: Path
    target_revision: str
    draft: AdhocDraft
    prompts: list[dict]
    ks: tuple[int, ...] = (2, 3, 4)
    offline: bool = True
    live: bool = True
    max_new_tokens: int = 64
    target_format: str = "int8"
    draft_format: str = "int8"  # the precision of a given draft IR, or of the one exported
    threads: int = 2
    confidence_thresholds: tuple[float, ...] = ()

    def version(self) -> str:
        """What makes two ad-hoc runs the same: draft files, target revision, prompts, settings."""
        files = [self.draft.hf_dir / "model.safetensors"] if self.draft.hf_dir else []
        if self.draft.ir_dir:
            files.append(self.draft.ir_dir / "openvino_model.bin")
        digests = [sha256_file(f) for f in files if f.is_file()]
        settings = {k: v for k, v in vars(self).items() if k not in ("draft", "target_dir")}
        return f"{ADHOC}-" + stable_hash({"draft": digests, **settings})


def run_adhoc(job: AdhocJob, device: BenchDevice, cache: Path, log: Log = print) -> dict[str, Any]:
    """Offline and/or live figures of the draft, in `benchmark_tables`' results.json shape."""
    if not job.offline and not job.live:
        raise ValueError("nothing to measure: ask for offline, live or both")
    for warning in require_same_tokens(job.draft.tokenizer_dir, job.target_dir, "--draft"):
        log(f"warning: {warning}")
    offline: list[OfflineRow] = []
    if job.offline:
        if job.draft.hf_dir is None:
            raise ValueError(
                f"--draft {job.draft.path}: offline acceptance scores the draft's weights; an IR "
                "alone supports --live only"
            )
        irs = {job.draft_format: job.draft.ir_dir} if job.draft.ir_dir else {}
        offline_job = OfflineJob(
            job.target_dir,
            job.draft.hf_dir,
            prompts=job.prompts,
            max_new_tokens=job.max_new_tokens,
            ks=list(job.ks),
            threads=job.threads,
            draft_irs=irs,
            target_precision=job.target_format,
        )
        offline = device.evaluate_offline(offline_job)
    tables: dict[str, Any] = {"offline": offline, "wallclock": [], "device": device.device}
    if job.live:
        live = _live(job, device, cache, log)
        tables |= {
            "wallclock": live["rows"],
            "best_k": int(live.get("best_k") or choose_k(live["rows"])),
            "choice": choose_mode(live["rows"]).to_dict(),
        }
    return tables


def _live(job: AdhocJob, device: BenchDevice, cache: Path, log: Log) -> LiveResult:
    key = stable_hash([job.target_name, job.target_revision], 12)
    target_ir = _export_cached(
        job.target_dir, cache / "target-irs" / f"{key}-{job.target_format}", job.target_format, log
    )
    draft_ir = job.draft.ir_dir
    if draft_ir is None:
        digest = sha256_file(job.draft.hf_dir / "model.safetensors")[:16]
        draft_ir = _export_cached(
            job.draft.hf_dir,
            cache / "draft-irs" / f"{digest}-{job.draft_format}",
            job.draft_format,
            log,
        )
    live = LiveJob(
        target_ir,
        draft_ir,
        prompts=job.prompts,
        tokenizer_dir=job.target_dir,
        max_new_tokens=job.max_new_tokens,
        ks=list(job.ks),
        margin_model_dir=job.target_dir,
        prompt_lookup=True,
        confidence_thresholds=list(job.confidence_thresholds),
    )
    return device.benchmark_live(live)


def record_adhoc(db_path: Path, job: AdhocJob, tables: dict[str, Any], run_id: str) -> str:
    """The figures as `benchmark_offline` / `benchmark_wallclock` rows marked ad-hoc."""
    version = job.version()
    common = {"target": job.target_name, "draft_version": str(job.draft.path), "run_kind": ADHOC}
    offline = [{**common, "target_precision": job.target_format, **r} for r in tables["offline"]]
    record_rows(db_path, "benchmark_offline", version, offline, run_id)
    wall = wallclock_db_rows(tables["wallclock"], job.draft_format, job.target_format)
    record_rows(db_path, "benchmark_wallclock", version, [{**common, **r} for r in wall], run_id)
    return version


def kd_contamination(kd_file: Path, prompt_files: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(KD prompt id, evaluation prompt id) pairs sharing a 13-word n-gram: a draft trained on
    those KD prompts would be scored on text it has seen. A warning, not a refusal: the user
    chose the prompts. No KD file (a draft from elsewhere): nothing to compare."""
    if not Path(kd_file).is_file() or not prompt_files:
        return []
    kd = load_prompts_jsonl(Path(kd_file))[0]
    user = [row for f in prompt_files for row in load_prompts_jsonl(Path(f))[0]]
    return overlap_with_eval(kd, user)
