"""Drop counts: how many items a step left out, by reason.

Every stage drops something (documents by a rule, prompts too long for the context, answers cut
at max_new_tokens, rows without a finished answer) and each used to count it in its own shape
under its own metadata key. One type with one rendering lets the Dagster layer report every
asset's drops under one key (`drops`), and lets a reader add phases together without guessing
the shape: reasons of two phases are kept apart by a prefix (`prompt:too_long`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class Drops:
    """Counts of dropped items by reason, in the order reasons were first seen."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self._counts: dict[str, int] = {}
        for reason, n in (counts or {}).items():
            self.add(reason, n)

    @classmethod
    def phases(cls, phases: Mapping[str, Mapping[str, int] | Drops]) -> Drops:
        """One count over several phases, each reason prefixed with its phase (`prompt:empty`)."""
        out = cls()
        for phase, counts in phases.items():
            for reason, n in counts.items():
                out.add(f"{phase}:{reason}", n)
        return out

    def add(self, reason: str, n: int = 1) -> None:
        """Count `n` more items dropped for `reason`; a negative or non-integer `n` is refused."""
        if not isinstance(reason, str) or not reason:
            raise ValueError(f"drop reason must be a non-empty string, got {reason!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"drop count for {reason!r} must be an integer >= 0, got {n!r}")
        self._counts[reason] = self._counts.get(reason, 0) + n

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def items(self) -> Iterator[tuple[str, int]]:
        """(reason, count) in first-seen order, zero counts included."""
        return iter(self._counts.items())

    def __getitem__(self, reason: str) -> int:
        return self._counts.get(reason, 0)

    def __contains__(self, reason: object) -> bool:
        return reason in self._counts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Drops):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"Drops({self.as_dict()})"

    def as_dict(self) -> dict[str, int]:
        """The non-zero counts sorted by reason: the form metadata and tables show."""
        return {r: n for r, n in sorted(self._counts.items()) if n}
