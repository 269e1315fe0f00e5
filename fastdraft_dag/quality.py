"""Quality gates as plain functions: the KD dataset's responses, acceptance against the last run.

The assets turn these into asset checks; here they are numbers with known answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any


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


def acceptance_regressions(
    current: Mapping[str, float], previous: Mapping[str, float], tolerance: float
) -> list[dict[str, Any]]:
    """Tasks whose alpha_greedy fell by more than `tolerance` (absolute) against the previous run.

    A task missing from either side is not compared: a new task cannot regress, a dropped one
    has nothing to compare.
    """
    if tolerance < 0:
        raise ValueError(f"acceptance tolerance {tolerance}: must be >= 0")
    out = []
    for task in sorted(set(current) & set(previous)):
        drop = previous[task] - current[task]
        if drop > tolerance:
            out.append(
                {
                    "task": task,
                    "previous": round(previous[task], 4),
                    "current": round(current[task], 4),
                    "drop": round(drop, 4),
                }
            )
    return out
