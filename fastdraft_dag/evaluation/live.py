"""Live speculative decoding on OpenVINO GenAI: plain target vs every drafted mode, greedy.

Modes: plain target decoding; our draft at every k asked for and at every confidence threshold
(dynamic draft length; one pipeline, the config changed per run); prompt lookup (n-grams of the
prompt as the draft) at every k too, so it is judged at its own best k; an off-the-shelf
reference draft at our draft's best k. Plain decoding runs before the first drafted phase and
again after each one (its pipeline stays loaded), and each mode is compared with the two plain
passes beside it: a slow spell of a shared host moves a mode and its baseline together instead of
every ratio of the run at once, and ``plain_spread`` says how far the passes lay apart. Every row carries a 95% bootstrap interval over prompts
beside its pooled speedup (``bootstrap``); the release's mode is chosen by ``modes``. Every mode
gets the same token ids (rendered and tokenized once with the HF tokenizer, so a chat template
is applied exactly once), device, precision hint and max new tokens, and each pipeline loads and
warms up once. Greedy SD should reproduce plain decoding; for real models near-tie argmax flips
make it differ sometimes, so agreement is measured per mode and the target's top-2 logit margin
at the first divergence is reported when a PyTorch copy of the target is given. No Dagster here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from fastdraft_dag.core.tokenizers import require_same_tokens
from fastdraft_dag.draft.derived import load_fp32_model
from fastdraft_dag.evaluation.bootstrap import pooled_speedup, speedup_interval
from fastdraft_dag.evaluation.modes import DRAFTED
from fastdraft_dag.openvino.genai import (
    PROMPT_LOOKUP_NGRAM,
    PromptRecord,
    available_devices,
    check_device,
    check_ir_dir,
    check_ks,
    first_divergence,
    greedy_config,
    make_pipeline,
    pipeline_properties,
    run_prompts,
    to_tensors,
    top2_margin,
)
from fastdraft_dag.prompts.render import encode_prompt

MAX_DIVERGENCES = 32  # per mode and k; one target forward pass each, cheap next to the benchmark
N_SAMPLES = 2  # prompts whose decoded text is kept (plain and our draft at the best k)


@dataclass(frozen=True)
class LiveJob:
    """What one live benchmark measures, declared once: ``benchmark_live``, the Core Ultra
    resource and the benchmark's ``BenchDevice`` all take this job. `draft_ir` (the standalone
    draft) and `eagle3_ir` (an EAGLE-3 head IR) may each be absent, not both."""

    target_ir: Path
    draft_ir: Path | None
    _: KW_ONLY
    prompts: list[dict]
    tokenizer_dir: Path
    max_new_tokens: int
    ks: Sequence[int]
    margin_model_dir: Path | None = None  # a PyTorch target for top-2 margins at divergences
    prompt_lookup: bool = True
    reference_draft_ir: Path | None = None
    confidence_thresholds: Sequence[float] = ()
    eagle3_ir: Path | None = None


class LiveRun(TypedDict):
    """One mode's generations of every prompt; ``plain_passes`` names the plain passes (indices)
    it is compared with, set once its phase has run."""

    mode: str
    draft: str
    k: int | None
    threshold: float | None
    records: list[PromptRecord]
    plain_passes: NotRequired[list[int]]


class LiveMeta(TypedDict):
    """The settings a live run was measured under, repeated on each of its rows."""

    device: str
    precision_hint: str
    threads: int  # 0: the runtime's default
    max_new_tokens: int


class LiveRow(TypedDict):
    """One mode/k/threshold on one task family (or "all"); formulas in ``_row``."""

    mode: str
    draft: str
    k: int | None
    confidence_threshold: float | None
    task: str
    n_prompts: int
    tokens: int
    tok_s: float
    speedup: float
    plain_tok_s: float
    speedup_ci_low: float
    speedup_ci_high: float
    plain_spread: float
    tau_measured: float | None
    accepted_per_step: float | None
    accepted_draft_tokens: int | None
    target_passes: int | None
    ttft_ms: float | None
    tpot_ms: float | None
    agreement: float | None
    device: str
    precision_hint: str
    threads: int
    max_new_tokens: int
    first_divergence: int | None
    divergence_margin: float | None


class Divergence(TypedDict):
    """Where one prompt's drafted generation first leaves plain decoding."""

    mode: str
    draft: str
    k: int | None
    threshold: float | None
    task: str
    prompt_index: int
    position: int
    top2_margin: float | None  # the target's top-1 minus top-2 logit there, when measured


class Sample(TypedDict):
    mode: str
    k: int | None
    prompt_index: int
    task: str
    text: str


class LiveResult(TypedDict):
    """What ``benchmark_live`` returns (keys documented there)."""

    rows: list[LiveRow]
    best_k: int
    divergences: list[Divergence]
    samples: list[Sample]
    plain_passes: list[float]  # tokens/s of each plain pass
    warnings: list[str]


def choose_k(rows: Iterable[Mapping[str, Any]]) -> int:
    """The fixed k of our drafts (standalone SD or EAGLE-3) with the highest pooled (task "all")
    tokens/s; ties -> smaller k.

    Confidence-threshold runs have no fixed k and are left out; the reference draft runs here.
    """
    best: tuple[float, int] | None = None
    for row in rows:
        fixed = row.get("confidence_threshold") is None
        if row.get("mode") in DRAFTED and row.get("task") == "all" and fixed:
            candidate = (float(row["tok_s"]), -int(row["k"]))
            best = candidate if best is None or candidate > best else best
    if best is None:
        raise ValueError(f"choose_k: no pooled (task 'all') rows of modes {DRAFTED} to choose from")
    return -best[1]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _row(
    run: LiveRun,
    idx: list[int],
    passes: list[list[PromptRecord]],
    task: str,
    meta: LiveMeta,
    first: Divergence | None,
) -> LiveRow:
    """One row of a mode over the prompts ``idx``: throughput, speedup, tau, latency, agreement.

    tau_measured = tokens / target passes (the prefill counts as one pass). Every pass emits its
    accepted drafts plus one token, so accepted = tokens - passes, and accepted_per_step divides
    that by the SD steps (passes minus one prefill per prompt). ttft_ms is the simple mean over
    prompts (one first token each); tpot_ms is weighted by each prompt's tokens after the first,
    i.e. total decode time / total decoded tokens. The speedup divides by plain decoding's
    tokens/s in the plain passes run beside this mode (``run["plain_passes"]``, their seconds
    averaged); plain_spread is how far those passes' tokens/s lie apart (max / min - 1);
    speedup_ci_low/high: 95% bootstrap interval over these prompts and those passes
    (``bootstrap.speedup_interval``). ``meta`` holds the run's settings (device, precision
    hint, threads, max new tokens); ``first`` the earliest divergence among these prompts.
    """
    recs = [run["records"][i] for i in idx]
    mine = [[passes[p][i] for i in idx] for p in run["plain_passes"]]
    tokens = sum(len(r["tokens"]) for r in recs)
    tok_s = tokens / sum(r["seconds"] for r in recs)
    plain_tokens = [len(b["tokens"]) for b in mine[0]]
    plain_seconds = [[b["seconds"] for b in bs] for bs in mine]
    pass_tok_s = [sum(plain_tokens) / sum(secs) for secs in plain_seconds]
    seconds = [r["seconds"] for r in recs]
    counts = [len(r["tokens"]) for r in recs]
    low, high = speedup_interval(counts, seconds, plain_tokens, plain_seconds)
    passes_total = [r["passes"] for r in recs]
    total = sum(passes_total) if None not in passes_total and sum(passes_total) > 0 else None
    drafted = run["mode"] != "plain"
    accepted = tokens - total if drafted and total is not None else None
    steps = total - len(recs) if total is not None else 0
    decoded = [max(len(r["tokens"]) - 1, 0) for r in recs]
    tpot = [r["tpot_ms"] * n for r, n in zip(recs, decoded, strict=True)]
    return {
        "mode": run["mode"],
        "draft": run["draft"],
        "k": run["k"],
        "confidence_threshold": run.get("threshold"),
        "task": task,
        "n_prompts": len(recs),
        "tokens": tokens,
        "tok_s": tok_s,
        "speedup": pooled_speedup(counts, seconds, plain_tokens, plain_seconds),
        "plain_tok_s": sum(plain_tokens) / (sum(map(sum, plain_seconds)) / len(plain_seconds)),
        "speedup_ci_low": low,
        "speedup_ci_high": high,
        "plain_spread": max(pass_tok_s) / min(pass_tok_s) - 1.0,
        "tau_measured": tokens / total if total is not None else None,
        "accepted_per_step": accepted / steps if accepted is not None and steps > 0 else None,
        "accepted_draft_tokens": accepted,
        "target_passes": total,
        "ttft_ms": _mean([r["ttft_ms"] for r in recs]),
        "tpot_ms": sum(tpot) / sum(decoded) if sum(decoded) else None,
        "agreement": _mean(
            [float(r["tokens"] == b["tokens"]) for r, b in zip(recs, mine[0], strict=True)]
        ),
        "device": meta["device"],
        "precision_hint": meta["precision_hint"],
        "threads": meta["threads"],
        "max_new_tokens": meta["max_new_tokens"],
        "first_divergence": first["position"] if first else None,
        "divergence_margin": first["top2_margin"] if first else None,
    }


def plain_run(passes: list[list[PromptRecord]]) -> LiveRun:
    """Plain decoding as one run: every pass, each prompt's times averaged over them."""
    records: list[PromptRecord] = []
    for per_prompt in zip(*passes, strict=True):
        mean = {f: _mean([r[f] for r in per_prompt]) for f in ("seconds", "ttft_ms", "tpot_ms")}
        records.append({**per_prompt[0], **mean})  # type: ignore[typeddict-item]
    return {
        "mode": "plain",
        "draft": "",
        "k": None,
        "threshold": None,
        "records": records,
        "plain_passes": list(range(len(passes))),
    }


RUN_KEY = ("mode", "draft", "k", "threshold")


def _first(divergences: list[Divergence], run: LiveRun, idx: list[int]) -> Divergence | None:
    """The run's earliest divergence (smallest token position) among the prompts ``idx``."""
    key = tuple(run.get(f) for f in RUN_KEY)
    mine = [
        d
        for d in divergences
        if tuple(d.get(f) for f in RUN_KEY) == key and d["prompt_index"] in set(idx)
    ]
    return min(mine, key=lambda d: (d["position"], d["prompt_index"]), default=None)


def build_rows(
    runs: list[LiveRun],
    passes: list[list[PromptRecord]],
    tasks: list[str],
    divergences: list[Divergence],
    meta: LiveMeta,
) -> list[LiveRow]:
    """Rows per mode/k: one per task family (sorted) and a pooled "all" row; every run names
    the plain ``passes`` it is compared with (``plain_passes``)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        groups[task].append(i)
    groups_all = [*sorted(groups.items()), ("all", list(range(len(tasks))))]
    return [
        _row(run, idx, passes, task, meta, _first(divergences, run, idx))
        for run in runs
        for task, idx in groups_all
    ]


def find_divergences(runs: list[LiveRun], tasks: list[str]) -> list[Divergence]:
    """Per drafted mode and k: where each disagreeing prompt first leaves plain decoding."""
    plain = runs[0]["records"]
    found: list[Divergence] = []
    for run in runs[1:]:
        mine: list[Divergence] = []
        for i, (p, r) in enumerate(zip(plain, run["records"], strict=True)):
            pos = first_divergence(p["tokens"], r["tokens"])
            if pos is not None and len(mine) < MAX_DIVERGENCES:
                mine.append(
                    {
                        "mode": run["mode"],
                        "draft": run["draft"],
                        "k": run["k"],
                        "threshold": run["threshold"],
                        "task": tasks[i],
                        "prompt_index": i,
                        "position": pos,
                        "top2_margin": None,
                    }
                )
        found += mine
    return found


def add_margins(
    divergences: list[Divergence],
    inputs: list[list[int]],
    plain: list[PromptRecord],
    model_dir: Path | None,
) -> None:
    """Fill ``top2_margin`` from an fp32 PyTorch target; one forward per distinct prefix."""
    if not divergences or model_dir is None:
        return
    model = load_fp32_model(Path(model_dir))
    cache: dict[tuple[int, int], float] = {}
    for d in divergences:
        key = (d["prompt_index"], d["position"])
        if key not in cache:
            prefix = inputs[key[0]] + plain[key[0]]["tokens"][: key[1]]
            cache[key] = top2_margin(model, prefix)
        d["top2_margin"] = cache[key]


def _measure(pipe: Any, tensors: list, max_new_tokens: int, modes: list[tuple]) -> list[LiveRun]:
    """Run (mode, draft label, k, ngram, threshold) on one loaded pipeline, warmed up once."""
    runs: list[LiveRun] = []
    for i, (mode, draft, k, ngram, threshold) in enumerate(modes):
        config = greedy_config(pipe, max_new_tokens, k, ngram, threshold)
        records = run_prompts(pipe, tensors, config, warm_up=i == 0)
        runs.append(
            {"mode": mode, "draft": draft, "k": k, "threshold": threshold, "records": records}
        )
    return runs


def _samples(runs: list[LiveRun], tokenizer: Any, tasks: list[str], best_k: int) -> list[Sample]:
    """Decoded text of the first prompts: plain decoding and our draft at the best k."""
    chosen = [
        r for r in runs if r["mode"] == "plain" or (r["mode"] in DRAFTED and r["k"] == best_k)
    ]
    return [
        {
            "mode": run["mode"],
            "k": run["k"],
            "prompt_index": i,
            "task": tasks[i],
            "text": tokenizer.decode(rec["tokens"]),
        }
        for run in chosen
        for i, rec in enumerate(run["records"][:N_SAMPLES])
    ]


def encode_inputs(tokenizer: Any, prompts: list[dict]) -> list[list[int]]:
    """The prompt ids every live mode is fed: the pipeline's one renderer, nothing else."""
    return [encode_prompt(tokenizer, row) for row in prompts]


def _check_thresholds(thresholds: Iterable[float]) -> list[float]:
    out = list(dict.fromkeys(float(t) for t in thresholds))
    bad = [t for t in out if not 0.0 < t < 1.0]
    if bad:
        raise ValueError(f"confidence thresholds must lie in (0, 1); got {out} (bad: {bad})")
    return out


def _check_inputs(prompts: list[dict], max_new_tokens: int, device: str) -> None:
    if not prompts:
        raise ValueError("prompts: the live benchmark got an empty prompt list")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    check_device(device, available_devices())


def benchmark_live(
    job: LiveJob, *, device: str = "CPU", precision_hint: str = "f32", threads: int | None = None
) -> LiveResult:
    """Plain, SD per k and per confidence threshold, EAGLE-3 per k, prompt lookup per k,
    reference draft. `job.draft_ir` (the standalone draft) and `job.eagle3_ir` (an EAGLE-3 head
    IR, which openvino_genai runs as such from its rt_info) may each be absent, not both.

    Greedy, per task family. Returns {"rows", "best_k", "divergences", "samples"}. One row per
    mode/k/threshold and task family plus a pooled "all" row (keys and formulas in ``_row``):
    ttft_ms is a simple mean over prompts, tpot_ms a token-weighted mean (total decode time /
    decoded tokens); speedup is tok_s over plain decoding's tok_s on the same task, with its 95%
    bootstrap interval over prompts and plain passes (plain runs before the first drafted phase
    and after each, ``measure``); first_divergence/divergence_margin are the earliest
    divergence among the row's prompts. Prompt lookup (max_ngram_size ``PROMPT_LOOKUP_NGRAM``)
    runs at every k of ``ks`` so it is judged at its own best k; the reference draft runs at
    ``best_k``, the fixed k maximising our draft's pooled tokens/s (``choose_k``). Every input is
    checked before any model loads.
    """
    ks = check_ks(job.ks)
    thresholds = _check_thresholds(job.confidence_thresholds)
    prompts, max_new_tokens = job.prompts, job.max_new_tokens
    _check_inputs(prompts, max_new_tokens, device)
    target_ir = check_ir_dir(job.target_ir, "target")
    if job.draft_ir is None and job.eagle3_ir is None:
        raise ValueError("benchmark_live: neither a draft IR nor an EAGLE-3 head IR to measure")
    draft_ir = check_ir_dir(job.draft_ir, "draft") if job.draft_ir is not None else None
    eagle3_ir = check_ir_dir(job.eagle3_ir, "EAGLE-3 head") if job.eagle3_ir is not None else None
    reference, warnings = None, []
    if job.reference_draft_ir is not None:
        reference = check_ir_dir(job.reference_draft_ir, "reference draft")
        warnings = require_same_tokens(reference, Path(job.tokenizer_dir), "reference draft")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(job.tokenizer_dir)
    inputs = encode_inputs(tokenizer, prompts)
    tasks = [str(row["task"]) for row in prompts]
    tensors = to_tensors(inputs)
    props = pipeline_properties(precision_hint, threads)
    meta: LiveMeta = {
        "device": device,
        "precision_hint": precision_hint,
        "threads": threads or 0,
        "max_new_tokens": max_new_tokens,
    }

    plain_pipe = make_pipeline(target_ir, device, props)
    plain_config = greedy_config(plain_pipe, max_new_tokens, None)
    passes = [run_prompts(plain_pipe, tensors, plain_config, warm_up=True)]
    drafted: list[LiveRun] = []

    def measure(modes: list[tuple], draft: Path | None = None, lookup: bool = False) -> None:
        """One phase, then a plain pass: each mode is compared with plain before and after it."""
        pipe = make_pipeline(target_ir, device, props, draft_ir=draft, prompt_lookup=lookup)
        runs = _measure(pipe, tensors, max_new_tokens, modes)
        del pipe  # one drafted pipeline in memory at a time, beside the plain one
        passes.append(run_prompts(plain_pipe, tensors, plain_config, warm_up=False))
        for run in runs:
            run["plain_passes"] = [len(passes) - 2, len(passes) - 1]
        drafted.extend(runs)

    if draft_ir is not None:
        sd_modes = [("sd", draft_ir.name, k, None, None) for k in ks]
        sd_modes += [("sd", draft_ir.name, None, None, t) for t in thresholds]
        measure(sd_modes, draft=draft_ir)
    if eagle3_ir is not None:
        measure([("eagle3", eagle3_ir.name, k, None, None) for k in ks], draft=eagle3_ir)
    best_k = choose_k(build_rows(drafted, passes, tasks, [], meta))
    if job.prompt_lookup:
        label = f"prompt-ngram{PROMPT_LOOKUP_NGRAM}"
        measure([("prompt_lookup", label, k, PROMPT_LOOKUP_NGRAM, None) for k in ks], lookup=True)
    if reference is not None:
        measure([("reference_draft", reference.name, best_k, None, None)], draft=reference)
    runs = [plain_run(passes), *drafted]
    divergences = find_divergences(runs, tasks)
    add_margins(divergences, inputs, runs[0]["records"], job.margin_model_dir)
    return {
        "rows": build_rows(runs, passes, tasks, divergences, meta),
        "best_k": best_k,
        "divergences": divergences,
        "samples": _samples(runs, tokenizer, tasks, best_k),
        "plain_passes": [
            sum(len(r["tokens"]) for r in p) / sum(r["seconds"] for r in p) for p in passes
        ],
        "warnings": warnings,
    }
