"""A 95% bootstrap interval over prompts for a pooled live speedup.

Prompts differ far more than timer noise (a code prompt that copies its input speeds up a lot, a
haiku does not), so the uncertainty that matters is which prompts were drawn. Resampling prompts
with replacement, paired (the same prompts for the mode and for plain decoding), and recomputing
the pooled ratio (summed tokens / summed seconds of the mode over that of plain) tells a reader
whether a 1.1x is a gain or the luck of eight prompts. Plain decoding is measured in several
passes (before and after each drafted phase: a slow spell of a shared host would otherwise move
every ratio of a run at once); each resample also draws one of them, so the interval covers which
plain pass a mode met as well. Seeded, so a rerun reports the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Seconds = Sequence[float] | Sequence[Sequence[float]]  # per prompt, or per plain pass per prompt

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def pooled_speedup(
    tokens: Sequence[float],
    seconds: Sequence[float],
    plain_tokens: Sequence[float],
    plain_seconds: Seconds,
) -> float:
    """Pooled tokens/s of a mode over pooled tokens/s of plain decoding on the same prompts
    (plain's seconds averaged over its passes)."""
    plain = _passes(plain_seconds).mean(axis=0)
    return (sum(tokens) / sum(seconds)) / (sum(plain_tokens) / float(plain.sum()))


def _passes(seconds: Seconds) -> np.ndarray:
    return np.atleast_2d(np.asarray(seconds, dtype=np.float64))


def speedup_interval(
    tokens: Sequence[float],
    seconds: Sequence[float],
    plain_tokens: Sequence[float],
    plain_seconds: Seconds,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> tuple[float, float]:
    """(low, high) percentile interval of the pooled speedup, prompts resampled in pairs (and
    one plain pass drawn per resample when ``plain_seconds`` holds several).

    One prompt and one pass give a zero-width interval: there is nothing to resample.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (tokens, seconds, plain_tokens)]
    passes = _passes(plain_seconds)
    n = len(arrays[0])
    if n == 0 or any(len(a) != n for a in arrays) or passes.shape[1] != n:
        raise ValueError(f"speedup_interval: need equal, non-empty per-prompt lists, got {n}")
    if resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"speedup_interval: resamples {resamples} >= 1, level {level} in (0, 1)")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    tok, sec, ptok = (a[idx].sum(axis=1) for a in arrays)
    drawn = rng.integers(0, len(passes), size=resamples)
    psec = passes[drawn[:, None], idx].sum(axis=1)
    ratios = (tok / sec) / (ptok / psec)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(low), float(high)
