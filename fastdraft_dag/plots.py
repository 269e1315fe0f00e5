"""PNG figures for asset metadata and model cards (matplotlib, headless)."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig: Any, path: Path) -> Path:
    """Write atomically: a half-written PNG must never replace a good one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
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
