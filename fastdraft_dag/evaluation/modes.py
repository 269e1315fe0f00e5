"""Which decoding mode the release ships: the fastest one measured, plain decoding included.

A draft that slows its target down is worse than no draft, and prompt lookup needs no draft at
all, so the release is chosen over every measured mode on the pooled prompt set (task "all"):
plain decoding, SD with the standalone draft at each fixed k and confidence threshold, SD with
the EAGLE-3 head at each k, and prompt lookup at each k. Ties go to the simpler mode (plain, then
SD, then EAGLE-3, then prompt lookup; smaller k first). The reference draft is a yardstick,
never shipped. No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

PLAIN, SD, EAGLE3, LOOKUP = "plain", "sd", "eagle3", "prompt_lookup"
SHIPPABLE = (PLAIN, SD, EAGLE3, LOOKUP)  # tie-break order: simpler first
DRAFTED = (SD, EAGLE3)  # modes that run one of our drafts


@dataclass(frozen=True)
class ModeFigures:
    """One pooled live measurement of a mode and its settings."""

    mode: str
    k: int | None
    confidence_threshold: float | None
    tok_s: float
    speedup: float
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None

    @property
    def label(self) -> str:
        """Short name with settings, e.g. ``sd k=3``, ``sd threshold=0.3``, ``plain``."""
        if self.confidence_threshold is not None:
            return f"{self.mode} threshold={self.confidence_threshold:g}"
        return self.mode if self.k is None else f"{self.mode} k={self.k}"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModeFigures:
        threshold = row.get("confidence_threshold")
        return cls(
            mode=str(row["mode"]),
            k=None if row.get("k") is None else int(row["k"]),
            confidence_threshold=None if threshold is None else float(threshold),
            tok_s=float(row["tok_s"]),
            speedup=float(row["speedup"]),
            speedup_ci_low=row.get("speedup_ci_low"),
            speedup_ci_high=row.get("speedup_ci_high"),
        )


@dataclass(frozen=True)
class ModeChoice:
    """The shipped mode, the best of each family, and how far SD is from winning."""

    chosen: ModeFigures
    plain: ModeFigures
    best_sd: ModeFigures | None
    best_lookup: ModeFigures | None
    best_eagle3: ModeFigures | None = None

    @property
    def best_draft(self) -> ModeFigures | None:
        """The fastest mode that runs one of our drafts (standalone SD or EAGLE-3)."""
        drafted = [f for f in (self.best_sd, self.best_eagle3) if f is not None]
        return max(drafted, key=_rank, default=None)

    @property
    def sd_pays(self) -> bool:
        """Our best drafted mode beats plain decoding and prompt lookup (when measured)."""
        best = self.best_draft
        if best is None or best.tok_s <= self.plain.tok_s:
            return False
        return self.best_lookup is None or best.tok_s >= self.best_lookup.tok_s

    @property
    def sd_vs_lookup(self) -> float | None:
        """Best drafted tokens/s over best prompt-lookup tokens/s (< 1: drafts lose to lookup)."""
        if self.best_draft is None or self.best_lookup is None:
            return None
        return self.best_draft.tok_s / self.best_lookup.tok_s

    def speedups(self) -> dict[str, float]:
        """Pooled speedup over plain of every family's best, by label."""
        figures = [self.plain, self.best_sd, self.best_eagle3, self.best_lookup]
        return {f.label: round(f.speedup, 4) for f in figures if f is not None}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for results.json and the release's ``release.json``."""
        return {
            "chosen": _plain(self.chosen),
            "plain": _plain(self.plain),
            "best_sd": _plain(self.best_sd),
            "best_lookup": _plain(self.best_lookup),
            "best_eagle3": _plain(self.best_eagle3),
            "best_draft": _plain(self.best_draft),
            "sd_pays": self.sd_pays,
            "sd_vs_lookup": self.sd_vs_lookup,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModeChoice:
        """The inverse of ``to_dict`` (results.json -> the asset's metadata and checks)."""
        return cls(
            chosen=_figures(data["chosen"]),
            plain=_figures(data["plain"]),
            best_sd=_figures(data["best_sd"]) if data.get("best_sd") else None,
            best_lookup=_figures(data["best_lookup"]) if data.get("best_lookup") else None,
            best_eagle3=_figures(data["best_eagle3"]) if data.get("best_eagle3") else None,
        )


def _plain(f: ModeFigures | None) -> dict[str, Any] | None:
    return None if f is None else {**asdict(f), "label": f.label}


def _figures(data: Mapping[str, Any]) -> ModeFigures:
    return ModeFigures(**{k: v for k, v in data.items() if k != "label"})


def _rank(f: ModeFigures) -> tuple:
    """Higher is better: throughput, then the simpler mode, then fixed k, then smaller k."""
    return (
        f.tok_s,
        -SHIPPABLE.index(f.mode),
        f.confidence_threshold is None,
        -(f.k or 0),
        -(f.confidence_threshold or 0.0),
    )


def _best(figures: list[ModeFigures], mode: str) -> ModeFigures | None:
    mine = [f for f in figures if f.mode == mode]
    return max(mine, key=_rank, default=None)


def choose_mode(rows: Iterable[Mapping[str, Any]]) -> ModeChoice:
    """The fastest pooled mode over plain, SD (per k and threshold) and prompt lookup (per k).

    Raises ValueError without a pooled plain row: a speedup needs its baseline.
    """
    figures = [
        ModeFigures.from_row(r)
        for r in rows
        if r.get("task") == "all" and r.get("mode") in SHIPPABLE
    ]
    plain = _best(figures, PLAIN)
    if plain is None:
        raise ValueError("choose_mode: no pooled (task 'all') plain row to compare against")
    return ModeChoice(
        chosen=max(figures, key=_rank),
        plain=plain,
        best_sd=_best(figures, SD),
        best_lookup=_best(figures, LOOKUP),
        best_eagle3=_best(figures, EAGLE3),
    )


def verdict(choice: ModeChoice) -> str:
    """One sentence on whether the draft pays for itself, with the figures that decide it."""
    sd, lookup = choice.best_draft, choice.best_lookup
    if sd is None:
        return "no speculative-decoding mode was measured"
    head = f"best drafted mode {sd.label}: {sd.speedup:.3f}x plain"
    if lookup is not None:
        head += f"; best prompt lookup {lookup.label}: {lookup.speedup:.3f}x plain"
    if sd.tok_s <= choice.plain.tok_s:
        return f"the draft slows decoding down ({head}); release ships {choice.chosen.label}"
    if not choice.sd_pays:
        return (
            f"the draft loses to prompt lookup ({head}; SD reaches {choice.sd_vs_lookup:.3f} of "
            f"prompt lookup's tokens/s); release ships {choice.chosen.label}"
        )
    return f"the draft pays for itself ({head}); release ships {choice.chosen.label}"
