"""Acceptance before and after alignment on the four evaluation families, side by side.

    python benchmarks/alignment_gain.py [--profile default] [--prompts 10]

Reads the latest `pretrained_draft` and `aligned_draft` of the profile's target from the artifact
root (run `make run` first) and scores both, in PyTorch fp32, on the same target continuations of
the benchmark prompts (`offline_eval.evaluate_offline`): greedy and sampled acceptance and the
MBSU at the profile's chosen k. The gate on `aligned_draft` measures the same on held-out KD rows.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fastdraft_dag.config.presets import load_profile
from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline
from fastdraft_dag.prompts.eval_sets import EVAL_FAMILIES, eval_prompts
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.resolve import resolve_target, target_key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--prompts", type=int, default=10, help="prompts per family")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument(
        "--root", type=Path, default=Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    )
    args = ap.parse_args()
    profile = load_profile(args.profile)
    store = ArtifactStore(args.root)
    key = target_key(profile.target)
    target = resolve_target(profile.target, args.root / "targets").path
    prompts = [p for fam in EVAL_FAMILIES for p in eval_prompts(fam, args.prompts)]
    figures = {}
    for asset in ("pretrained_draft", "aligned_draft"):
        draft = store.latest(asset, key).path
        job = OfflineJob(
            target,
            draft,
            prompts=prompts,
            max_new_tokens=profile.bench.offline_max_new_tokens,
            ks=[args.k],
            threads=profile.threads,
        )
        rows = evaluate_offline(job)
        figures[asset] = {r["task"]: r for r in rows}
    print(f"\n{profile.target}: PyTorch fp32 drafts, {args.prompts} prompts per family, k={args.k}")
    print(f"{'task':18s} {'alpha_greedy':>22s} {'alpha_sampled':>22s} {'MBSU':>16s}")
    for task in [*EVAL_FAMILIES, "all"]:
        before, after = figures["pretrained_draft"][task], figures["aligned_draft"][task]
        cells = [
            f"{before[m]:.3f} -> {after[m]:.3f}".rjust(w)
            for m, w in (("alpha_greedy", 22), ("alpha_sampled", 22), ("mbsu", 16))
        ]
        print(f"{task:18s} {' '.join(cells)}")


if __name__ == "__main__":
    main()
