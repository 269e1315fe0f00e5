"""Speculative-decoding metrics, as pure functions with known answers.

The definitions follow ``shared/design/method.md``: alpha (greedy and sampled acceptance), tau
(block efficiency: tokens produced per target forward pass), MBSU and Leviathan's expected
speedup. Keeping them here, free of models and Dagster, lets tests pin every formula exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def greedy_acceptance(target_argmax: Sequence[int], draft_argmax: Sequence[int]) -> float:
    """Fraction of positions where the draft's argmax equals the target's (greedy alpha)."""
    t, d = np.asarray(target_argmax), np.asarray(draft_argmax)
    if t.shape != d.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {d.shape}")
    return float((t == d).mean()) if t.size else 0.0


def overlap_per_position(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """sum_x min(p(x), q(x)) per position: the chance a sampled draft token is accepted there."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"shape mismatch: {p.shape} vs {q.shape}")
    return np.minimum(p, q).sum(axis=-1)


def sampled_acceptance(p: np.ndarray, q: np.ndarray) -> float:
    """Sampled alpha = mean over positions of sum_x min(p, q) (one minus total variation).

    ``p`` (target) and ``q`` (draft) are probability arrays whose last axis is the vocabulary.
    """
    overlaps = overlap_per_position(p, q)
    return float(overlaps.mean()) if overlaps.size else 0.0


def tau_iid(alpha: float, k: int) -> float:
    """Block efficiency if every drafted token is accepted independently with probability alpha.

    tau = (1 - alpha^(k+1)) / (1 - alpha); the limit at alpha = 1 is k + 1 (all drafts + bonus).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha >= 1.0:
        return float(k + 1)
    return (1.0 - alpha ** (k + 1)) / (1.0 - alpha)


def mbsu(tau: float, k: int, r: float) -> float:
    """Memory-bound speedup tau / (k*r + 1): each step reads the draft k times, the target once."""
    return tau / (k * r + 1.0)


def expected_speedup(alpha: float, k: int, c: float) -> float:
    """Leviathan et al.'s expected wall-time factor, with c = draft step time / target step time."""
    return tau_iid(alpha, k) / (k * c + 1.0)


@dataclass
class GreedySimulation:
    """Outcome of replaying greedy SD over teacher-forced match sequences."""

    k: int
    steps: int = 0
    tokens: int = 0
    # reached[j] / accepted[j]: steps whose j-th draft token (0-based) was scored / accepted.
    reached: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)


def _run_length(matches: Sequence[bool], start: int, k: int) -> int:
    """Number of consecutive True values from ``start``, at most k."""
    run = 0
    while run < k and start + run < len(matches) and matches[start + run]:
        run += 1
    return run


def simulate_greedy_sd(match_seqs: Sequence[Sequence[bool]], k: int) -> GreedySimulation:
    """Replay greedy SD: each step accepts the run of matches (at most k) plus one target token.

    ``match_seqs[i][t]`` says whether the draft's argmax equals the target's greedy token at
    continuation position t, given the target's own prefix. Under greedy decoding that prefix is
    exactly what SD would have produced, so the replay is exact, not an approximation. The last
    step of a sequence is cut at its end.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sim = GreedySimulation(k=k, reached=[0] * k, accepted=[0] * k)
    for matches in match_seqs:
        pos = 0
        while pos < len(matches):
            run = _run_length(matches, pos, k)
            for j in range(min(run + 1, k, len(matches) - pos)):
                sim.reached[j] += 1
                sim.accepted[j] += int(j < run)
            pos += run + 1
            sim.steps += 1
        sim.tokens += len(matches)
    return sim


def tau_simulated(match_seqs: Sequence[Sequence[bool]], k: int) -> float:
    """Measured-style tau from teacher-forced matches: tokens produced / simulated SD steps."""
    sim = simulate_greedy_sd(match_seqs, k)
    return sim.tokens / sim.steps if sim.steps else 0.0


def acceptance_by_position(match_seqs: Sequence[Sequence[bool]], k: int) -> list[float]:
    """P(draft token j is accepted | the step reached it), j = 1..k, from the greedy replay.

    Shows whether acceptance decays along the draft block, which iid tau ignores.
    """
    sim = simulate_greedy_sd(match_seqs, k)
    return [a / r if r else 0.0 for a, r in zip(sim.accepted, sim.reached, strict=True)]


def _safetensors_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape for every safetensors shard, read from headers only (no weights)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    for path in files:
        with safe_open(str(path), framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def params_read_per_token(model_dir: Path) -> int:
    """Parameters a decoding step reads: all, minus the input embedding, plus the LM head.

    Decoding one token reads a single row of the input embedding, so it does not count; the LM
    head is read in full. With tied embeddings (no separate ``lm_head.weight``) the embedding
    matrix is counted exactly once, as the LM head; with untied ones the embedding is dropped.
    """
    # an EAGLE-3 head's d2t/t2d are index tables: one entry is read per token, not the table
    shapes = {
        n: s for n, s in _safetensors_shapes(model_dir).items() if not n.endswith(("d2t", "t2d"))
    }
    total = sum(int(np.prod(s)) for s in shapes.values())
    embed = [n for n in shapes if n.endswith(("embed_tokens.weight", "wte.weight"))]
    has_head = any(n.endswith("lm_head.weight") for n in shapes)
    if has_head or not _tied(model_dir):
        total -= sum(int(np.prod(shapes[n])) for n in embed)
    return total


def _tied(model_dir: Path) -> bool:
    """Whether config.json ties input and output embeddings (transformers' default is True)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return bool(config.get("tie_word_embeddings", True))


def param_bytes_ratio(
    draft_dir: Path,
    target_dir: Path,
    draft_bytes_per_param: float = 4.0,
    target_bytes_per_param: float = 4.0,
) -> float:
    """r for MBSU: draft parameter bytes read per token / target parameter bytes read per token.

    Counts follow ``params_read_per_token``. Bytes per parameter default to equal precisions
    (r is then a count ratio); pass e.g. 1.0 for an int8 draft against a 2.0 fp16 target.
    """
    draft = params_read_per_token(draft_dir) * draft_bytes_per_param
    target = params_read_per_token(target_dir) * target_bytes_per_param
    return draft / target
