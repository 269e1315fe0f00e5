"""PNG figures for asset metadata and model cards (matplotlib, headless)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fastdraft_dag.core.files import atomic_path
from fastdraft_dag.core.jsonl import read_jsonl


def save(fig: Any, path: Path) -> Path:
    """Write atomically: a half-written PNG must never replace a good one."""
    path = Path(path)
    try:
        with atomic_path(path, unique=False) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def markdown_image(path: Path, alt: str) -> str:
    """Inline the PNG so the Dagster UI shows it in the metadata panel, wherever the file lives."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def funnel_plot(funnel: Sequence[dict[str, Any]], path: Path) -> Path:
    """Documents dropped per step and kept, one panel per source (steps with drops only)."""
    sources = list(dict.fromkeys(r["source"] for r in funnel))
    fig, axes = plt.subplots(
        1, len(sources), figsize=(3.2 * len(sources), 3.4), squeeze=False, sharey=False
    )
    for ax, source in zip(axes[0], sources, strict=True):
        rows = [r for r in funnel if r["source"] == source and (r["docs"] or r["stage"] == "kept")]
        labels = [r["step"] for r in rows]
        colors = ["tab:green" if r["stage"] == "kept" else "tab:red" for r in rows]
        ax.barh(labels, [r["docs"] for r in rows], color=colors)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(source, fontsize=9)
        ax.set_xlabel("documents (log)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("corpus funnel: dropped per step (red), kept (green)", fontsize=10)
    return save(fig, path)


def acceptance_by_position_plot(
    offline: Sequence[dict[str, Any]], precision: str, k: int, path: Path
) -> Path:
    """P(draft token j accepted | reached) for j = 1..k, one line per task family.

    A line that falls along the block says acceptance decays with depth, which iid tau ignores.
    """
    rows = [r for r in offline if r.get("precision") == precision and r["k"] == k]
    if not rows:
        raise ValueError(f"no offline rows for precision {precision!r} at k={k} to plot")
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for r in rows:
        style = {"color": "black", "linestyle": "--"} if r["task"] == "all" else {}
        positions = range(1, len(r["acceptance_by_position"]) + 1)
        ax.plot(positions, r["acceptance_by_position"], marker="o", label=r["task"], **style)
    ax.set_xlabel("draft position j", fontsize=8)
    ax.set_ylabel("P(accepted | reached)", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"acceptance by draft position ({precision} draft, k={k})", fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return save(fig, path)


def speedup_vs_k_plot(
    offline: Sequence[dict[str, Any]], live: Sequence[dict[str, Any]], precision: str, path: Path
) -> Path:
    """Left: MBSU per task vs k (offline, ``precision`` draft). Right: measured SD speedup vs k.

    Side by side, the gap between the memory-bound model and the device shows what the draft's
    own step costs there; the right panel also shows prompt lookup per k (pooled): the bar the
    draft must clear for the release to ship it.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4), sharey=True)
    tasks = sorted({r["task"] for r in offline if r.get("precision") == precision})
    for task in tasks:
        rows = sorted(
            (r for r in offline if r.get("precision") == precision and r["task"] == task),
            key=lambda r: r["k"],
        )
        style = {"color": "black", "linestyle": "--"} if task == "all" else {}
        left.plot(
            [r["k"] for r in rows], [r["mbsu"] for r in rows], marker="o", label=task, **style
        )
    # Fixed-k rows only: a confidence-threshold run has no k to sit at (it is in the table).
    fixed = [r for r in live if r.get("k") is not None and r.get("speedup") is not None]
    sd = [r for r in fixed if r.get("mode") == "sd"]
    for task in sorted({r["task"] for r in sd}):
        rows = sorted((r for r in sd if r["task"] == task), key=lambda r: r["k"])
        style = {"color": "black", "linestyle": "--"} if task == "all" else {}
        right.plot(
            [r["k"] for r in rows], [r["speedup"] for r in rows], marker="s", label=task, **style
        )
    lookup = sorted(
        (r for r in fixed if r.get("mode") == "prompt_lookup" and r["task"] == "all"),
        key=lambda r: r["k"],
    )
    if lookup:  # the bar the draft must clear, at prompt lookup's own k
        right.plot(
            [r["k"] for r in lookup],
            [r["speedup"] for r in lookup],
            color="grey",
            linestyle=":",
            marker="^",
            label="prompt lookup (all)",
        )
    for ax, title in (
        (left, f"MBSU, offline ({precision} draft)"),
        (right, "measured wall-clock speedup (SD / plain)"),
    ):
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xlabel("k (draft tokens per step)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        if ax.lines[1:]:
            ax.legend(fontsize=7)
    left.set_ylabel("speedup", fontsize=8)
    return save(fig, path)


def train_log_rows(path: Path) -> list[dict[str, Any]]:
    """The trainer's `train_log.jsonl` (kind train / eval rows); [] when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    return read_jsonl(path)[0]


def loss_curve_plot(log_rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Training loss per step (one line per stage) and validation loss points, from the
    trainer's `train_log.jsonl` rows (kind train / eval)."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    stages = list(dict.fromkeys(r.get("stage", "") for r in log_rows))
    for stage in stages:
        train = [r for r in log_rows if r.get("kind") == "train" and r.get("stage") == stage]
        evals = [r for r in log_rows if r.get("kind") == "eval" and r.get("stage") == stage]
        evals = [r for r in evals if isinstance(r.get("val_loss"), int | float)]
        if train:
            line = ax.plot([_step(r) for r in train], [r["loss"] for r in train], label=stage)
            color = line[0].get_color()
        else:
            color = None
        if evals:
            ax.plot(
                [_step(r) for r in evals],
                [r["val_loss"] for r in evals],
                "o--",
                color=color,
                label=f"{stage} val",
            )
    if not ax.lines:
        plt.close(fig)
        raise ValueError("no train or eval rows with a loss to plot")
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("cross-entropy (nats/token)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return save(fig, path)


def _step(row: dict[str, Any]) -> int:
    """Global step where the trainer wrote one (it spans stages), else the stage's step."""
    return int(row.get("global_step", row.get("step", 0)))


# Alt text -> file name of the benchmark's figures (asset metadata, model card, release folder).
BENCHMARK_PLOTS = {
    "acceptance by draft position": "acceptance_by_position.png",
    "speedup vs k": "speedup_vs_k.png",
}


def benchmark_plots(
    out: Path, offline: Sequence[dict[str, Any]], live: Sequence[dict[str, Any]], sd_precision: str
) -> dict[str, Path]:
    """Both benchmark figures under ``out``, keyed by alt text (see BENCHMARK_PLOTS).

    Acceptance by position is drawn for the fp16 draft IR (the PyTorch fp32 draft without one) at
    the largest k; MBSU for the precision the live benchmark runs (``sd_precision``) if scored.
    """
    precisions = {r["precision"] for r in offline}
    curve = "fp16" if "fp16" in precisions else "torch-fp32"
    mbsu = sd_precision if sd_precision in precisions else "torch-fp32"
    k = max(r["k"] for r in offline)
    paths = {alt: Path(out) / name for alt, name in BENCHMARK_PLOTS.items()}
    acceptance_by_position_plot(offline, curve, k, paths["acceptance by draft position"])
    speedup_vs_k_plot(offline, live, mbsu, paths["speedup vs k"])
    return paths


def history_plot(rows: Sequence[dict[str, Any]], path: Path, target: str) -> Path:
    """Acceptance and pooled speedups of each benchmarked draft version, oldest first: the trend
    scheduled retraining should show (a dashed line at 1x: slower than plain below it)."""
    fig, (ax_a, ax_s) = plt.subplots(1, 2, figsize=(9, 3.2))
    x = list(range(1, len(rows) + 1))
    ax_a.plot(x, [r.get("alpha_greedy") for r in rows], "o-", color="tab:blue")
    ax_a.set(xlabel="benchmark (oldest first)", ylabel="greedy acceptance (all)", ylim=(0, 1))
    for key, label in (("sd_speedup", "best SD"), ("lookup_speedup", "best prompt lookup")):
        ax_s.plot(x, [r.get(key) for r in rows], "o-", label=label)
    ax_s.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax_s.set(xlabel="benchmark (oldest first)", ylabel="speedup over plain (all)")
    ax_s.legend(fontsize=8)
    for ax in (ax_a, ax_s):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"{target}: draft versions over time")
    return save(fig, path)
