"""A 95% bootstrap interval over prompts for a pooled live speedup.

Prompts differ far more than timer noise (a code prompt that copies its input speeds up a lot, a
haiku does not), so the uncertainty that matters is which prompts were drawn. Resampling prompts
with replacement, paired (the same prompts for the mode and for plain decoding), and recomputing
the pooled ratio (summed tokens / summed seconds of the mode over that of plain) tells a reader
whether a 1.1x is a gain or the luck of eight prompts. Seeded, so a rerun reports the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def pooled_speedup(
    tokens: Sequence[float],
    seconds: Sequence[float],
    plain_tokens: Sequence[float],
    plain_seconds: Sequence[float],
) -> float:
    """Pooled tokens/s of a mode over pooled tokens/s of plain decoding on the same prompts."""
    return (sum(tokens) / sum(seconds)) / (sum(plain_tokens) / sum(plain_seconds))


def speedup_interval(
    tokens: Sequence[float],
    seconds: Sequence[float],
    plain_tokens: Sequence[float],
    plain_seconds: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """(low, high) percentile interval of the pooled speedup, prompts resampled in pairs.

    One prompt gives a zero-width interval: there is nothing to resample.
    """
    arrays = [
        np.asarray(a, dtype=np.float64) for a in (tokens, seconds, plain_tokens, plain_seconds)
    ]
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays):
        raise ValueError(f"speedup_interval: need equal, non-empty per-prompt lists, got {n}")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"speedup_interval: resamples {resamples} >= 1, level {level} in (0, 1)")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    tok, sec, ptok, psec = (a[idx].sum(axis=1) for a in arrays)
    ratios = (tok / sec) / (ptok / psec)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)
