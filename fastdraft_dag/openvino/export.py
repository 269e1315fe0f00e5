"""Export a Hugging Face causal LM to an OpenVINO IR directory that openvino_genai can load.

Uses optimum-intel's Python API in-process (the CLI pays ~12 s of imports per call) and always
writes the OpenVINO tokenizer/detokenizer IRs: ``openvino_genai.LLMPipeline`` refuses a
directory without them. int8 is NNCF INT8_ASYM per-channel weight compression, as the FastDraft
release uses; int4 is asymmetric group-wise (group 64 divides the hidden sizes of SmolLM2 and
the tiny models; NNCF adjusts layers it does not divide).

``run_export`` is the `openvino_ir` asset's runner: every planned IR exported through the given
exporter (the Core Ultra resource's) and its logits checked against PyTorch on the resource's
device. No Dagster here.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.core.files import replace_dir
from fastdraft_dag.draft.derived import load_fp32_model
from fastdraft_dag.draft.eagle3 import is_eagle3_dir
from fastdraft_dag.openvino.eagle3 import check_head_ir, export_head
from fastdraft_dag.openvino.ir_scoring import IRScorer
from fastdraft_dag.openvino.trimmed import INT4_GROUP_SIZE, export_trimmed, is_trimmed

WEIGHT_FORMATS = ("fp32", "fp16", "int8", "int4")
IR_PROBE = 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
# Largest |IR - PyTorch| last-position logit a correct export shows, per weight format.
LOGIT_TOLERANCE = {"fp32": 1e-3, "fp16": 0.5, "int8": 5.0, "int4": 10.0}


def _quantization_config(weight_format: str) -> Any:
    """optimum-intel weight-compression config for int8/int4; None for float formats."""
    from optimum.intel import OVWeightQuantizationConfig

    if weight_format == "int8":
        return OVWeightQuantizationConfig(bits=8, sym=False)
    if weight_format == "int4":
        return OVWeightQuantizationConfig(
            bits=4, sym=False, ratio=1.0, group_size=INT4_GROUP_SIZE, group_size_fallback="adjust"
        )
    return None


def _export_model(model_dir: Path, out: Path, weight_format: str) -> None:
    """Trace the model to IR, compress weights as asked, and save it under ``out``."""
    from optimum.intel import OVModelForCausalLM

    model = OVModelForCausalLM.from_pretrained(
        model_dir,
        export=True,
        compile=False,
        local_files_only=True,
        quantization_config=_quantization_config(weight_format),
    )
    if weight_format == "fp16":
        model.half()
    model.save_pretrained(out)


def _export_tokenizers(model_dir: Path, out: Path) -> None:
    """Save the HF tokenizer files and convert them to OpenVINO tokenizer/detokenizer IRs."""
    from optimum.exporters.openvino.convert import export_tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.save_pretrained(out)
    export_tokenizer(tokenizer, out, task="text-generation-with-past")
    for name in ("openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        if not (out / name).is_file():
            raise RuntimeError(f"tokenizer conversion did not write {name} for {model_dir}")


def export_ir(model_dir: Path, out_dir: Path, weight_format: str) -> dict:
    """Export ``model_dir`` to an OpenVINO IR directory at ``out_dir`` in ``weight_format``.

    Writes to a sibling temp dir and renames, so a failed export never leaves a half IR that a
    later run would mistake for a finished one. Returns what the asset records as metadata.
    """
    if weight_format not in WEIGHT_FORMATS:
        raise ValueError(f"weight_format must be one of {WEIGHT_FORMATS}, got {weight_format!r}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    try:
        if is_eagle3_dir(model_dir):
            export_head(model_dir, tmp, weight_format, _quantization_config(weight_format))
        elif is_trimmed(model_dir):
            export_trimmed(model_dir, tmp, weight_format)
        else:
            _export_model(model_dir, tmp, weight_format)
        _export_tokenizers(model_dir, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    replace_dir(tmp, out_dir)
    files = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    ir_files = ("openvino_model.xml", "openvino_model.bin")
    ir_bytes = sum((out_dir / f).stat().st_size for f in ir_files)
    return {
        "weight_format": weight_format,
        "files": files,
        "ir_bytes": ir_bytes,
        "seconds": round(seconds, 3),
    }


def _ir_last_logits(ir_dir: Path, prompt_ids: list[int], device: str = "CPU") -> Any:
    """Last-position logits of the IR, compiled with the f32 hint so precision is the weights'."""
    return IRScorer(ir_dir, device=device).logits(prompt_ids)[-1]


def _torch_last_logits(model_dir: Path, prompt_ids: list[int]) -> Any:
    """Last-position fp32 logits of the PyTorch model: the reference the IR must match."""
    import torch

    model = load_fp32_model(model_dir)  # a trimmed draft: full-vocabulary logits, as its IR
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits
    return logits[0, -1].numpy()


def check_ir_logits(
    model_dir: Path, ir_dir: Path, prompt_ids: list[int], tolerance: float, device: str = "CPU"
) -> dict:
    """Compare last-position logits of the IR and PyTorch: catches a broken or mis-quantized export.

    Returns max abs difference, argmax agreement and ``ok`` (diff within tolerance and argmax
    equal). fp32 IRs should agree to ~1e-4; fp16/int8 weights need looser tolerances.
    """
    import numpy as np

    ir = _ir_last_logits(ir_dir, prompt_ids, device)
    ref = _torch_last_logits(model_dir, prompt_ids)
    max_abs = float(np.abs(ir - ref).max())
    same_argmax = int(ir.argmax()) == int(ref.argmax())
    return {
        "max_abs_diff": max_abs,
        "argmax_ir": int(ir.argmax()),
        "argmax_torch": int(ref.argmax()),
        "argmax_agree": same_argmax,
        "tolerance": tolerance,
        "ok": bool(max_abs <= tolerance and same_argmax),
    }


@dataclass(frozen=True)
class ExportJob:
    """One IR to build: its directory name under the artifact, the HF source, the format."""

    name: str
    source: Path
    weight_format: str


@dataclass(frozen=True)
class ExportResult:
    """One row per exported IR: size, export seconds and the logit check's figures."""

    rows: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(r.get("ok") for r in self.rows)


Exporter = Callable[[Path, Path, str], dict]


def plan_exports(
    draft_dir: Path | None,
    target_dir: Path,
    draft_formats: Sequence[str],
    target_format: str,
    reference_dir: Path | None = None,
    reference_format: str | None = None,
    head_dir: Path | None = None,
) -> list[ExportJob]:
    """Every precision of each draft (the standalone draft, the EAGLE-3 head), the target, and
    the optional reference draft, in that order."""
    jobs = [ExportJob(f"draft-{f}", Path(draft_dir), f) for f in draft_formats if draft_dir]
    jobs += [ExportJob(f"eagle3-{f}", Path(head_dir), f) for f in draft_formats if head_dir]
    jobs.append(ExportJob(f"target-{target_format}", Path(target_dir), target_format))
    if reference_dir is not None:
        if reference_format is None:
            raise ValueError("plan_exports: a reference draft needs its weight format")
        name = f"reference-draft-{reference_format}"
        jobs.append(ExportJob(name, Path(reference_dir), reference_format))
    for job in jobs:
        if job.weight_format not in WEIGHT_FORMATS:
            raise ValueError(
                f"{job.name}: weight_format {job.weight_format!r} is not one of {WEIGHT_FORMATS}"
            )
    return jobs


def probe_ids(tokenizer_dir: Path) -> list[int]:
    """The IR check's prompt as the target's token ids (raw text: no chat template needed)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return list(tokenizer(IR_PROBE, add_special_tokens=False)["input_ids"])


def run_export(
    jobs: Sequence[ExportJob],
    out: Path,
    probe: list[int],
    exporter: Exporter = export_ir,
    device: str = "CPU",
    log: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export each job to ``out/<name>`` through ``exporter`` and check its logits on ``device``.

    The exporter is a parameter so the asset exports through its Core Ultra resource and a test
    can count calls without optimum-intel.
    """
    rows = []
    for job in jobs:
        if log is not None:
            log(f"exporting {job.name} from {job.source}")
        info = exporter(job.source, Path(out) / job.name, job.weight_format)
        tolerance = LOGIT_TOLERANCE.get(job.weight_format, 10.0)
        checker = check_head_ir if is_eagle3_dir(job.source) else check_ir_logits
        check = checker(job.source, Path(out) / job.name, probe, tolerance, device)
        rows.append(
            {
                "ir": job.name,
                "weight_format": job.weight_format,
                "mb": round(info["ir_bytes"] / 1e6, 1),
                "seconds": round(info["seconds"], 1),
                **{k: v for k, v in check.items() if not isinstance(v, (list, dict))},
            }
        )
    return ExportResult(rows)
