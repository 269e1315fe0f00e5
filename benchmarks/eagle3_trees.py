"""EAGLE-3 chain vs tree drafting on this CPU: `make bench-eagle3-trees`.

    python benchmarks/eagle3_trees.py [--prompts 4] [--rounds 2]

Reads the default profile's latest `openvino_ir` (the target and the EAGLE-3 head IR at the
benchmark's draft precision) from the artifact root (run `make run` first) and decodes the
evaluation prompts greedily with openvino_genai: plain, EAGLE-3 chains at k = 2..4 and tree
shapes (tree_depth, branching_factor, num_assistant_tokens). Modes are interleaved round by
round so a slow phase of a shared host hits every mode alike; prints tokens/s over plain's
and tau (tokens per target pass) per mode, pooled over the prompts.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from fastdraft_dag.config.presets import load_profile
from fastdraft_dag.evaluation.live import encode_inputs
from fastdraft_dag.evaluation.results import bench_prompt_set
from fastdraft_dag.openvino import genai
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.resolve import target_key

MAX_NEW = 64
# (label, k or nodes, tree_depth, branching_factor); depth 0 = a chain
SHAPES = [
    ("chain k=2", 2, 0, 0),
    ("chain k=3", 3, 0, 0),
    ("chain k=4", 4, 0, 0),
    ("tree d3 b2 n6", 6, 3, 2),
    ("tree d4 b2 n8", 8, 4, 2),
    ("tree d3 b3 n9", 9, 3, 3),
]


def run(pipe, tensors: list, k: int | None, depth: int, branching: int) -> tuple[float, float]:
    """(tokens/s, tokens per target pass) over all prompts."""
    config = genai.greedy_config(pipe, MAX_NEW, k)
    if depth:
        config.tree_depth, config.branching_factor = depth, branching
    records = genai.run_prompts(pipe, tensors, config, False)
    tokens = sum(len(r["tokens"]) for r in records)
    seconds = sum(r["seconds"] for r in records)
    passes = [r["passes"] for r in records]
    tau = tokens / sum(passes) if all(passes) else float("nan")
    return tokens / seconds, tau


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--root", type=Path, default=Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    )
    ap.add_argument("--prompts", type=int, default=4, help="prompts per family")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    profile = load_profile("default")
    irs = ArtifactStore(args.root).latest("openvino_ir", target_key(profile.target)).path
    target_ir = irs / f"target-{profile.export.target_format}"
    head_ir = irs / f"eagle3-{profile.bench.sd_draft_format}"
    tok = AutoTokenizer.from_pretrained(target_ir)
    tensors = genai.to_tensors(encode_inputs(tok, bench_prompt_set(args.prompts)[0]))
    props = genai.pipeline_properties("f32", profile.threads or None)
    plain = genai.make_pipeline(target_ir, "CPU", props)
    head = genai.make_pipeline(target_ir, "CPU", props, draft_ir=head_ir)
    genai.run_prompts(plain, tensors[:1], genai.greedy_config(plain, 8, None), True)
    genai.run_prompts(head, tensors[:1], genai.greedy_config(head, 8, 2), True)
    speed: dict[str, list[float]] = {"plain": []}
    taus: dict[str, float] = {}
    for _ in range(args.rounds):
        speed["plain"].append(run(plain, tensors, None, 0, 0)[0])
        for label, k, depth, branching in SHAPES:
            tok_s, taus[label] = run(head, tensors, k, depth, branching)
            speed.setdefault(label, []).append(tok_s)
    base = statistics.mean(speed["plain"])
    rows = [
        {"mode": m, "tok_s": round(statistics.mean(v), 1),
         "vs_plain": round(statistics.mean(v) / base, 3), "tau": round(taus.get(m, 1.0), 3)}
        for m, v in speed.items()
    ]  # fmt: skip
    print(md_table(rows))
    print(f"\n{len(tensors)} prompts, {MAX_NEW} new tokens, {args.rounds} interleaved rounds")


if __name__ == "__main__":
    main()
