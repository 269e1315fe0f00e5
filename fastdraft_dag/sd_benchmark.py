"""Wall-clock speculative decoding on OpenVINO GenAI: plain target vs target + draft, greedy.

Both modes get the same token ids (rendered and tokenized once with the HF tokenizer, so the
chat template is applied exactly once and openvino_genai's own templating never runs), the same
device, precision hint and max new tokens. Each mode loads one pipeline and warms it up once.
Greedy SD should reproduce plain decoding; for real models near-tie argmax flips make it differ
sometimes, so agreement is measured and the target's top-2 logit margin at the first divergence
is reported when a PyTorch copy of the target is given.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from fastdraft_dag.offline_eval import load_fp32_model, prompt_ids

MAX_DIVERGENCES = 64  # one target forward pass each: cheap next to the benchmark itself


def pipeline_properties(precision_hint: str, threads: int | None) -> dict[str, Any]:
    """OpenVINO properties for both models; threads 0/None keeps OpenVINO's default."""
    props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision_hint}
    if threads:
        props["INFERENCE_NUM_THREADS"] = int(threads)
    return props


def _make_pipeline(target_ir: Path, draft_ir: Path | None, device: str, props: dict) -> Any:
    """One LLMPipeline per mode: loading costs seconds, so it is never done per prompt."""
    import openvino_genai as ov_genai

    if draft_ir is None:
        return ov_genai.LLMPipeline(str(target_ir), device, **props)
    draft = ov_genai.draft_model(str(draft_ir), device, **props)
    return ov_genai.LLMPipeline(str(target_ir), device, draft_model=draft, **props)


def _config(pipe: Any, max_new_tokens: int, k: int | None) -> Any:
    """Greedy config derived from the pipeline's own (a bare GenerationConfig has no EOS)."""
    config = pipe.get_generation_config()
    config.max_new_tokens = max_new_tokens
    config.do_sample = False
    config.apply_chat_template = False
    if k is not None:
        config.num_assistant_tokens = k
    return config


def _sd_counts(result: Any) -> dict[str, Any]:
    """Accepted draft tokens and target forward passes from extended_perf_metrics, if exposed."""
    ext = getattr(result, "extended_perf_metrics", None)
    try:
        main = ext.main_model_metrics
        return {
            "accepted": int(ext.get_num_accepted_tokens()),
            "draft_tokens": int(ext.get_num_draft_tokens()),
            "target_passes": len(main.raw_metrics.m_durations),
        }
    except AttributeError:
        return {"accepted": None, "draft_tokens": None, "target_passes": None}


def _run_mode(pipe: Any, inputs: list[list[int]], config: Any) -> list[dict]:
    """Generate every prompt once (after one warm-up), timing each call by wall clock."""
    import numpy as np
    import openvino as ov

    tensors = [ov.Tensor(np.asarray([ids], dtype=np.int64)) for ids in inputs]
    pipe.generate(tensors[0], config)  # warm-up: first call compiles kernels and allocates
    out = []
    for tensor in tensors:
        start = time.perf_counter()
        result = pipe.generate(tensor, config)
        seconds = time.perf_counter() - start
        out.append({"tokens": list(result.tokens[0]), "seconds": seconds, **_sd_counts(result)})
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


def _divergences(inputs: list[list[int]], plain: list[dict], sd: list[dict], margin_dir) -> list:
    """First divergence of the first few disagreeing prompts, with the target's logit margin."""
    found = []
    for i, (p, s) in enumerate(zip(plain, sd, strict=True)):
        pos = first_divergence(p["tokens"], s["tokens"])
        if pos is not None:
            found.append({"prompt_index": i, "position": pos, "top2_margin": None})
        if len(found) >= MAX_DIVERGENCES:
            break
    if found and margin_dir is not None:
        model = load_fp32_model(Path(margin_dir))
        for d in found:
            prefix = inputs[d["prompt_index"]] + plain[d["prompt_index"]]["tokens"][: d["position"]]
            d["top2_margin"] = top2_margin(model, prefix)
    return found


def _summarize(task: str, plain: list[dict], sd: list[dict], meta: dict) -> dict:
    """One row: tokens/s of both modes, speedup, agreement and measured tau (if exposed)."""
    n_plain = sum(len(p["tokens"]) for p in plain)
    n_sd = sum(len(s["tokens"]) for s in sd)
    plain_tps = n_plain / sum(p["seconds"] for p in plain)
    sd_tps = n_sd / sum(s["seconds"] for s in sd)
    passes = [s["target_passes"] for s in sd]
    accepted = [s["accepted"] for s in sd]
    known = None not in passes and None not in accepted and sum(passes) > 0
    return {
        **meta,
        "task": task,
        "n_prompts": len(plain),
        "plain_tokens": n_plain,
        "sd_tokens": n_sd,
        "plain_tok_s": plain_tps,
        "sd_tok_s": sd_tps,
        "speedup": sd_tps / plain_tps,
        "agreement": sum(p["tokens"] == s["tokens"] for p, s in zip(plain, sd, strict=True))
        / len(plain),
        "accepted_draft_tokens": sum(accepted) if known else None,
        "target_passes": sum(passes) if known else None,
        "tau_measured": n_sd / sum(passes) if known else None,
    }


def benchmark_sd(
    target_ir: Path,
    draft_ir: Path,
    prompts: list[dict],
    tokenizer_dir: Path,
    max_new_tokens: int,
    k: int,
    device: str = "CPU",
    precision_hint: str = "f32",
    threads: int | None = None,
    margin_model_dir: Path | None = None,
) -> dict:
    """Plain vs speculative greedy decoding per task family; rows record device, hint and k.

    tau_measured = generated tokens / target forward passes (the prefill counts as one pass).
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    inputs = [prompt_ids(tokenizer, row) for row in prompts]
    props = pipeline_properties(precision_hint, threads)
    plain_pipe = _make_pipeline(Path(target_ir), None, device, props)
    plain = _run_mode(plain_pipe, inputs, _config(plain_pipe, max_new_tokens, None))
    del plain_pipe
    sd_pipe = _make_pipeline(Path(target_ir), Path(draft_ir), device, props)
    sd = _run_mode(sd_pipe, inputs, _config(sd_pipe, max_new_tokens, k))
    del sd_pipe
    meta = {
        "device": device,
        "precision_hint": precision_hint,
        "k": k,
        "threads": threads or 0,
        "max_new_tokens": max_new_tokens,
    }
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(prompts):
        by_task[row["task"]].append(i)
    per_task = [
        _summarize(t, [plain[i] for i in idx], [sd[i] for i in idx], meta)
        for t, idx in sorted(by_task.items())
    ]
    overall = _summarize("all", plain, sd, meta)
    overall["divergences"] = _divergences(inputs, plain, sd, margin_model_dir)
    for row in [*per_task, overall]:
        mine = set(range(len(prompts))) if row["task"] == "all" else set(by_task[row["task"]])
        first = next((d for d in overall["divergences"] if d["prompt_index"] in mine), None)
        row["first_divergence"] = first["position"] if first else None
        row["divergence_margin"] = first["top2_margin"] if first else None
    overall["samples"] = [tokenizer.decode(s["tokens"]) for s in sd[:2]]
    return {"per_task": per_task, "overall": overall}
