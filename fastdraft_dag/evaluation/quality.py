"""Benchmark quality gates as plain functions: acceptance against the last run, quantization losses.

The assets turn these into asset checks; here they are numbers with known answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


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


QUANTIZED = ("int8", "int4")


def quantized_acceptance_losses(
    rows: Iterable[Mapping[str, Any]], tolerance: float = 0.02
) -> dict[str, Any]:
    """Greedy-acceptance loss of each quantized draft (int8/int4) against its float reference.

    The reference is the fp16 draft IR, or the PyTorch fp32 draft (``torch-fp32``) when no fp16
    IR was scored. ``rows`` are offline rows (precision, task, alpha_greedy; alpha_greedy does
    not depend on k, so duplicates per k agree). Returns the reference, every (precision, task)
    loss, and the ones above ``tolerance`` (absolute) as ``failures``.
    """
    if tolerance < 0:
        raise ValueError(f"quantization tolerance {tolerance}: must be >= 0")
    alpha: dict[tuple[str, str], float] = {}
    for row in rows:
        alpha[(row["precision"], row["task"])] = float(row["alpha_greedy"])
    precisions = {p for p, _ in alpha}
    reference = "fp16" if "fp16" in precisions else "torch-fp32"
    losses = []
    for (precision, task), value in sorted(alpha.items()):
        base = alpha.get((reference, task))
        if precision not in QUANTIZED or base is None:
            continue
        loss = base - value
        losses.append(
            {
                "precision": precision,
                "task": task,
                "reference": round(base, 4),
                "alpha_greedy": round(value, 4),
                "loss": round(loss, 4),
            }
        )
    failures = [x for x in losses if x["loss"] > tolerance]
    return {"reference": reference, "losses": losses, "failures": failures}
