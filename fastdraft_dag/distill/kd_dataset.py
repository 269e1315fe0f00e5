"""Building the KD dataset: assemble disjoint prompts, fit them to the target, let it answer."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastdraft_dag.core.errors import InputError
from fastdraft_dag.distill.config import KDConfig
from fastdraft_dag.distill.generation import generate_responses, kd_target_ir
from fastdraft_dag.distill.kd_rows import read_rows
from fastdraft_dag.distill.prompt_sources import assemble_prompts, evaluation_texts, fit_to_target


class PromptSetError(InputError):
    """The prompt set cannot be built (contamination, a bad file or setting): retrying won't help."""


def build_prompts(
    target_dir: Path, cfg: KDConfig, eval_files: tuple[str, ...]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """KD prompts, disjoint from every evaluation text, that fit the target with room to answer."""
    try:
        eval_rows, heldout = evaluation_texts(eval_files)
        prompts, stats = assemble_prompts(
            cfg.prompt_counts(),
            cfg.seed,
            cfg.max_prompt_chars,
            cfg.prompt_sources,
            eval_rows,
        )
    except ValueError as exc:  # ContaminationError, or a bad prompt file / setting
        raise PromptSetError(str(exc)) from exc
    prompts, fit = fit_to_target(prompts, target_dir, cfg.max_new_tokens)
    stats["drops"]["prompt_too_long"] = fit["prompt_too_long"]
    stats |= {
        "heldout_indexed": heldout,
        "context_len": fit["context_len"],
        "template": fit["template"],
    }
    return prompts, stats


def build_kd_dataset(
    target_dir: Path,
    target_name: str,
    cfg: KDConfig,
    eval_files: tuple[str, ...],
    threads: int,
    out: Path,
) -> dict[str, Any]:
    """`out/kd.jsonl` (resumable: rows already in it are kept); returns the dataset's metrics."""
    prompts, prompt_stats = build_prompts(target_dir, cfg, eval_files)
    ir_dir = kd_target_ir(target_dir, out / "_target_ir", cfg.backend)
    stats = generate_responses(
        target_dir,
        prompts,
        out / "kd.jsonl",
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        temperature=cfg.temperatures,
        seed=cfg.seed,
        threads=threads,
        dtype=cfg.dtype,
        backend=cfg.backend,
        ir_dir=ir_dir,
        keep_truncated=cfg.keep_truncated,
    )
    shutil.rmtree(out / "_target_ir", ignore_errors=True)  # 4 bytes/param: not kept
    rows = read_rows(out / "kd.jsonl")[0]
    if not rows:
        raise RuntimeError(
            f"synthetic_kd_dataset: the target {target_name} produced no usable rows from "
            f"{len(prompts)} prompts (drops: {stats.get('drops')})"
        )
    return {
        **stats,
        "template": stats.get("template", prompt_stats["template"]),
        "prompts": len(prompts),
        "prompt_stats": prompt_stats,
        "by_task": dict(Counter(r["task"] for r in rows)),
    }


def task_totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows and prompt/response tokens per task: the `kd_datasets` table's rows."""
    tasks = Counter(r["task"] for r in rows)
    return [
        {
            "task": task,
            "rows": n,
            "prompt_tokens": sum(r["prompt_tokens"] for r in rows if r["task"] == task),
            "response_tokens": sum(r["response_tokens"] for r in rows if r["task"] == task),
        }
        for task, n in tasks.items()
    ]


def sample_rows(rows: list[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """A few rows, cut and made safe for a markdown table."""

    def cell(text: str, width: int) -> str:
        return text[:width].replace("\n", " ").replace("|", "/")

    return [
        {
            "id": r["id"],
            "task": r["task"],
            "prompt": cell(r["prompt"], 80),
            "response": cell(r["response"], 120),
            "finish": r["finish"],
        }
        for r in rows[:n]
    ]


def kd_response_quality(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Count empty and truncated responses, overall and per task.

    Empty: no visible text or no response tokens (nothing to learn, a broken row). Truncated:
    generation stopped at max_new_tokens (`finish == "length"`); the default profile keeps
    those on purpose (they are still the target's distribution), so they are reported, not
    refused.
    """
    total, empty, truncated = Counter(), Counter(), Counter()
    for row in rows:
        task = row.get("task", "?")
        total[task] += 1
        if not str(row.get("response", "")).strip() or not row.get("response_tokens", 1):
            empty[task] += 1
        elif row.get("finish") == "length":
            truncated[task] += 1
    n = sum(total.values())
    return {
        "rows": n,
        "empty": sum(empty.values()),
        "truncated": sum(truncated.values()),
        "truncated_fraction": round(sum(truncated.values()) / n, 4) if n else 0.0,
        "by_task": {
            t: {"rows": total[t], "empty": empty[t], "truncated": truncated[t]}
            for t in sorted(total)
        },
    }
