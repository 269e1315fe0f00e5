"""openvino_genai plumbing for the live benchmark: input checks, pipelines, timed generation.

Every decoding mode (plain target, target + draft, prompt lookup) goes through the same three
steps here: build one pipeline, derive a greedy config from the pipeline's own, and generate
each prompt once after a single warm-up. Prompts arrive as token ids (tokenized once with the HF
tokenizer), so openvino_genai's own chat templating never runs. No Dagster here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, TypedDict

IR_FILE = "openvino_model.xml"
DEVICES = ("CPU", "GPU", "NPU", "AUTO")
PROMPT_LOOKUP_NGRAM = 3  # max_ngram_size: longest prompt n-gram matched to propose tokens


def check_ir_dir(ir_dir: Path, role: str) -> Path:
    """The IR directory, or FileNotFoundError naming the missing model file and its role."""
    xml = Path(ir_dir) / IR_FILE
    if not xml.is_file():
        raise FileNotFoundError(f"{role} OpenVINO IR not found: {xml} does not exist")
    return Path(ir_dir)


def check_ks(ks: Sequence[int]) -> list[int]:
    """Draft lengths to try: a non-empty list of ints >= 1, duplicates dropped, order kept."""
    if not ks:
        raise ValueError("ks (draft tokens per step to benchmark) is empty")
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, Integral) or k < 1]
    if bad:
        raise ValueError(f"ks must hold integers >= 1; got {list(ks)} (bad: {bad})")
    return list(dict.fromkeys(int(k) for k in ks))


def check_device(device: str, available: list[str]) -> None:
    """Fail early, naming the device and listing what exists (e.g. GPU asked on a CPU box).

    "GPU" matches "GPU.0"/"GPU.1"; AUTO only needs some device to exist.
    """
    base = device.split(".")[0].split(":")[0].upper()
    if base not in DEVICES:
        raise ValueError(
            f"unknown OpenVINO device {device!r}; expected one of {DEVICES} "
            f"(available here: {available})"
        )
    if base == "AUTO":
        ok = bool(available)
    else:
        ok = any(d == device or d.split(".")[0] == device for d in available)
    if not ok:
        raise RuntimeError(f"OpenVINO device {device!r} is not available here; found {available}")


def available_devices() -> list[str]:
    """Devices the OpenVINO runtime sees on this machine (e.g. CPU, GPU.0, NPU)."""
    import openvino as ov

    return list(ov.Core().available_devices)


def pipeline_properties(precision_hint: str, threads: int | None) -> dict[str, Any]:
    """OpenVINO properties for every model; threads 0/None keeps OpenVINO's default."""
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision_hint}
    if threads:
        props["INFERENCE_NUM_THREADS"] = int(threads)
    return props


def make_pipeline(
    target_ir: Path,
    device: str,
    props: dict[str, Any],
    draft_ir: Path | None = None,
    prompt_lookup: bool = False,
) -> Any:
    """One LLMPipeline per mode: loading costs seconds, so it is never done per prompt or per k."""
    import openvino_genai as ov_genai

    if draft_ir is not None:
        draft = ov_genai.draft_model(str(draft_ir), device, **props)
        return ov_genai.LLMPipeline(str(target_ir), device, draft_model=draft, **props)
    if prompt_lookup:
        return ov_genai.LLMPipeline(str(target_ir), device, prompt_lookup=True, **props)
    return ov_genai.LLMPipeline(str(target_ir), device, **props)


def greedy_config(
    pipe: Any,
    max_new_tokens: int,
    k: int | None,
    ngram: int | None = None,
    confidence_threshold: float | None = None,
) -> Any:
    """Greedy config derived from the pipeline's own (a bare GenerationConfig has no EOS).

    ``apply_chat_template`` is off because the ids are already rendered; ``k`` sets the draft
    tokens per step (SD and prompt lookup), ``ngram`` the prompt-lookup n-gram size, and
    ``confidence_threshold`` SD's dynamic draft length. openvino_genai refuses a threshold next
    to a fixed k, so exactly one of the two is set and the other cleared.
    """
    if k is not None and confidence_threshold is not None:
        raise ValueError("a fixed k and a confidence threshold are mutually exclusive")
    config = pipe.get_generation_config()
    config.max_new_tokens = max_new_tokens
    config.do_sample = False
    config.apply_chat_template = False
    if k is not None:
        config.assistant_confidence_threshold = 0.0
        config.num_assistant_tokens = k
    if confidence_threshold is not None:
        config.num_assistant_tokens = 0
        config.assistant_confidence_threshold = float(confidence_threshold)
    if ngram is not None:
        config.max_ngram_size = ngram
    return config


def target_passes(result: Any, n_tokens: int) -> int | None:
    """Target forward passes of one generation, None when the runtime does not expose them.

    In openvino_genai 2026.4 ``perf_metrics.raw_metrics.m_batch_sizes`` holds the tokens each
    target pass emitted (1 for plain decoding; accepted drafts + 1 under SD and prompt lookup),
    so its length is the pass count. It is trusted only when it sums to the tokens generated.
    ``extended_perf_metrics.get_num_accepted_tokens()`` is not used: it misses the accepted
    tokens of the last step when generation stops at max_new_tokens.
    """
    try:
        sizes = [int(b) for b in result.perf_metrics.raw_metrics.m_batch_sizes]
    except AttributeError:
        return None
    return len(sizes) if sizes and sum(sizes) == n_tokens else None


class PromptRecord(TypedDict):
    """One prompt's generation in one live mode: what the benchmark's rows are computed from."""

    tokens: list[int]
    seconds: float  # wall clock of the generate call
    passes: int | None  # target forward passes, None where the runtime does not report them
    ttft_ms: float
    tpot_ms: float


def _record(result: Any, seconds: float) -> PromptRecord:
    """What one generation contributes to a row: tokens, wall time, passes, TTFT and TPOT."""
    tokens = [int(t) for t in result.tokens[0]]
    metrics = result.perf_metrics
    return {
        "tokens": tokens,
        "seconds": seconds,
        "passes": target_passes(result, len(tokens)),
        "ttft_ms": float(metrics.get_ttft().mean),
        "tpot_ms": float(metrics.get_tpot().mean),
    }


def to_tensors(inputs: list[list[int]]) -> list[Any]:
    """Prompt ids as [1, n] int64 OpenVINO tensors, built once and shared by every mode."""
    import numpy as np
    import openvino as ov

    return [ov.Tensor(np.asarray([ids], dtype=np.int64)) for ids in inputs]


def run_prompts(pipe: Any, tensors: list[Any], config: Any, warm_up: bool) -> list[PromptRecord]:
    """Generate every prompt once, timing each call by wall clock.

    The warm-up (first prompt, untimed) is done once per pipeline: its first call compiles
    kernels and allocates caches, which would otherwise land on the first prompt.
    """
    if warm_up:
        pipe.generate(tensors[0], config)
    out = []
    for tensor in tensors:
        start = time.perf_counter()
        result = pipe.generate(tensor, config)
        out.append(_record(result, time.perf_counter() - start))
    return out


def first_divergence(a: list[int], b: list[int]) -> int | None:
    """Index of the first differing token of two generations, None if identical."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def top2_margin(model: Any, ids: list[int]) -> float:
    """Target's top-1 minus top-2 logit for the next token after ``ids`` (a near-tie is small)."""
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])
