"""Comparing two corpus builds of the same input: how alike their kept sets are, and why not.

Used to put our data path next to another tool's (benchmarks/data_vs_datatrove.py): a speed
figure means something only if both kept (nearly) the same documents, and where they did not,
the reasons on each side say which rule to align.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

KEPT = "kept"


def kept_jaccard(ours: Collection[str], theirs: Collection[str]) -> float:
    """|A & B| / |A | B| of two kept-id sets; 1.0 when both are empty (nothing to disagree on)."""
    a, b = set(ours), set(theirs)
    union = len(a | b)
    return len(a & b) / union if union else 1.0


@dataclass(frozen=True)
class Disagreement:
    """Documents kept by one side only, grouped by the reason each side gives."""

    kept_by: str  # "ours" or "theirs": the side that kept them
    our_reason: str
    their_reason: str
    docs: int
    example: str  # one id, to look at


def disagreements(
    ours: Collection[str],
    theirs: Collection[str],
    our_reason: Callable[[Iterable[str]], dict[str, str]],
    their_reason: Callable[[Iterable[str]], dict[str, str]],
    top: int = 8,
) -> list[Disagreement]:
    """The `top` largest groups of documents kept by exactly one side, by (side, reasons).

    Each reason function is asked only about the ids its side dropped and the other kept
    (finding a reason can cost as much as the build); it returns {id: reason}, and an id it
    leaves out is reported as "?".
    """
    a, b = set(ours), set(theirs)
    only = sorted(a ^ b)
    mine, yours = our_reason(sorted(b - a)), their_reason(sorted(a - b))
    groups: Counter[tuple[str, str, str]] = Counter()
    example: dict[tuple[str, str, str], str] = {}
    for doc in only:
        side = "ours" if doc in a else "theirs"
        key = (side, KEPT if side == "ours" else mine.get(doc, "?"))
        key += (KEPT if side == "theirs" else yours.get(doc, "?"),)
        groups[key] += 1
        example.setdefault(key, doc)
    return [
        Disagreement(side, r1, r2, n, example[(side, r1, r2)])
        for (side, r1, r2), n in groups.most_common(top)
    ]
