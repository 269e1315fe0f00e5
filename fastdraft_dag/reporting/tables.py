"""Markdown tables of benchmark results: the same text in asset metadata, the CLI and model cards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OFFLINE_COLUMNS = (
    "precision",
    "task",
    "k",
    "alpha_greedy",
    "alpha_sampled",
    "tau_iid",
    "tau_sim",
    "mbsu",
    "r",
    "n_prompts",
    "n_tokens",
)
WALL_COLUMNS = (
    "mode",
    "draft",
    "k",
    "confidence_threshold",
    "task",
    "tok_s",
    "speedup",
    "speedup_95ci",
    "plain_spread",
    "tau_measured",
    "accepted_per_step",
    "ttft_ms",
    "tpot_ms",
    "agreement",
    "first_divergence",
    "divergence_margin",
    "n_prompts",
)
MODE_ORDER = ("plain", "sd", "prompt_lookup", "reference_draft")
REFERENCE_PRECISION = "torch-fp32"


def md_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_no rows_"
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def offline_by_precision(rows: Sequence[Mapping[str, Any]], k: int) -> list[Mapping[str, Any]]:
    """Offline rows at one k, every precision and task: what quantization costs, side by side."""
    return [r for r in rows if r["k"] == k]


def offline_reference(
    rows: Sequence[Mapping[str, Any]], ks: Sequence[int]
) -> list[Mapping[str, Any]]:
    """The PyTorch fp32 draft's rows at ``ks`` (rows from before precisions existed count too)."""
    return [
        r
        for r in rows
        if r["k"] in ks and r.get("precision", REFERENCE_PRECISION) == REFERENCE_PRECISION
    ]


def live_sorted(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Live rows grouped by mode (plain first), then k, then task ("all" last)."""

    def key(r: Mapping[str, Any]) -> tuple:
        mode = r.get("mode")
        order = MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)
        threshold = r.get("confidence_threshold")
        fixed = (threshold is not None, r.get("k") or 0, threshold or 0.0)
        return (order, *fixed, r.get("task") == "all", str(r.get("task")))

    return sorted(rows, key=key)


def interval(low: float | None, high: float | None) -> str:
    """A 95% interval as ``[low, high]`` (empty when not measured, e.g. older rows)."""
    return "" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def with_intervals(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Live rows with a printable ``speedup_95ci`` column beside the pooled speedup."""
    return [
        {**r, "speedup_95ci": interval(r.get("speedup_ci_low"), r.get("speedup_ci_high"))}
        for r in rows
    ]


def mode_line(choice: Mapping[str, Any], device: str) -> str:
    """One line naming the release's mode, its speedup and interval, and the draft's best SD."""
    chosen = choice["chosen"]
    ci = interval(chosen.get("speedup_ci_low"), chosen.get("speedup_ci_high"))
    line = f"Release mode on {device}: **{chosen['label']}** ({chosen['speedup']:.3f}x plain"
    line += f", 95% interval {ci})" if ci else ")"
    for key, what in (("best_sd", "standalone draft"), ("best_eagle3", "EAGLE-3 head")):
        best = choice.get(key)
        if best and best["label"] != chosen["label"]:
            line += (
                f"; the {what}'s best mode ({best['label']}) reached {best['speedup']:.3f}x plain"
            )
    return line


def eagle3_estimate(offline: Mapping[str, Any]) -> list[str]:
    """The EAGLE-3 head's offline chained acceptance (held-out KD answers), as table lines."""
    if not offline.get("chains"):
        return []
    taus = sorted(k for k in offline if k.startswith("tau_k"))
    rows = [
        {"task": t, "chains": f["chains"], **{k: round(f[k], 3) for k in taus}}
        for t, f in (offline.get("by_task") or {}).items()
    ]
    rows.append(
        {"task": "all", "chains": offline["chains"], **{k: round(offline[k], 3) for k in taus}}
    )
    alphas = ", ".join(f"{a:.3f}" for a in offline.get("alpha_by_step", []))
    mbsus = sorted(k for k in offline if k.startswith("mbsu_k"))
    bound = (
        f" MBSU (head/target bytes per step r = {offline['r']:.4f}): "
        + ", ".join(f"k={k[len('mbsu_k') :]} {offline[k]:.2f}" for k in mbsus)
        + "."
        if mbsus
        else ""
    )
    return [
        "",
        "### EAGLE-3 head, offline estimate (held-out KD answers, target features, fp32)",
        md_table(rows, ["task", "chains", *taus]),
        "",
        f"tau_kN: mean accepted length of an N-token greedy chain, bonus token included. "
        f"Per-step acceptance alpha_j: {alphas}.{bound}",
    ]


def render_benchmark(tables: Mapping[str, Any], ks: Sequence[int] = (1, 3, 5, 8)) -> str:
    """The benchmark in markdown: reference acceptance by k, all precisions at the chosen k, live."""
    offline = tables["offline"]
    best_k = tables.get("best_k")
    k = best_k if best_k in {r["k"] for r in offline} else max((r["k"] for r in offline), default=0)
    lines = [
        "### Acceptance, tau and MBSU from target and draft logits (greedy, PyTorch fp32 draft)",
        md_table(offline_reference(offline, ks), OFFLINE_COLUMNS),
        "",
        f"### Every exported draft precision at k = {k}",
        md_table(offline_by_precision(offline, k), OFFLINE_COLUMNS),
        "",
        "### Wall-clock speculative decoding (openvino_genai)",
        md_table(with_intervals(live_sorted(tables["wallclock"])), WALL_COLUMNS),
        "",
        "speedup_95ci: 95% bootstrap interval over prompts (paired with plain decoding) and the "
        "plain passes run beside the mode; plain_spread: how far those passes' tokens/s lie apart "
        "(max / min - 1).",
    ]
    lines += eagle3_estimate(tables.get("eagle3_offline") or {})
    device = tables.get("device", "?")
    if best_k is not None:
        lines += ["", f"Best fixed SD k on {device}: **{best_k}**"]
    if tables.get("choice"):
        lines += ["", mode_line(tables["choice"], device)]
    return "\n".join(lines)
