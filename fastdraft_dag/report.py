"""Markdown tables of benchmark results: the same text in asset metadata, the CLI and model cards."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

OFFLINE_COLUMNS = (
    "task",
    "k",
    "alpha_greedy",
    "alpha_sampled",
    "tau_iid",
    "tau_sim",
    "mbsu",
    "n_prompts",
    "n_tokens",
)
WALL_COLUMNS = (
    "task",
    "k",
    "plain_tok_s",
    "sd_tok_s",
    "speedup",
    "tau_measured",
    "agreement",
    "first_divergence",
    "divergence_margin",
    "n_prompts",
)


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


def render_benchmark(tables: Mapping[str, Any], ks: Sequence[int] = (1, 3, 5, 8)) -> str:
    offline = [r for r in tables["offline"] if r["k"] in ks]
    return "\n".join(
        [
            "### Acceptance, tau and MBSU from target and draft logits (greedy)",
            md_table(offline, OFFLINE_COLUMNS),
            "",
            "### Wall-clock speculative decoding (openvino_genai)",
            md_table(tables["wallclock"], WALL_COLUMNS),
        ]
    )
