"""KD generation throughput: our backends vs unbatched `generate()`, same target, same prompts.

    make bench-kd            # or: python benchmarks/kd_generation.py --prompts 24 --max-new-tokens 96

Baseline: PyTorch `generate()` one prompt at a time (batch 1, fp32, greedy), the obvious way to
let a target answer prompts. Ours: the same prompts through `kd_generation.generate_responses`
with the OpenVINO continuous-batching backend (the target as an fp32 IR, f32 hint) and with
batched PyTorch. All runs are greedy and stop at end of turn, so tokens/s compare like for like;
the agreement column says how many responses are identical to the baseline's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from fastdraft_dag.distill.generation import generate_responses
from fastdraft_dag.distill.kd_prompts import kd_prompts
from fastdraft_dag.openvino.export import export_ir
from fastdraft_dag.targets.resolve import EMBEDDED_NAME, resolve_target

REPO = Path(__file__).resolve().parents[1]


def _responses(path: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["id"]: r["response"] for r in rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32, help="sequences in flight (ours)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=REPO / "artifacts" / "test-cache")
    args = ap.parse_args()

    target = resolve_target(EMBEDDED_NAME, args.cache / "targets").path
    n_code = args.prompts // 3
    prompts = kd_prompts(args.prompts - n_code, n_code, seed=7)
    common = {"max_new_tokens": args.max_new_tokens, "threads": args.threads, "progress": False}
    common |= {"temperature": 0.0, "keep_truncated": True}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        export_ir(target, tmp / "ir", "fp32")
        export_s = time.perf_counter() - t0
        runs = {
            "baseline: generate() unbatched": dict(backend="torch", batch_size=1, dtype="fp32"),
            "ours: openvino continuous batching": dict(
                backend="openvino", ir_dir=tmp / "ir", batch_size=args.batch_size
            ),
            "ours: torch batched": dict(backend="torch", batch_size=8, dtype="fp32"),
        }
        stats, answers = {}, {}
        for name, kw in runs.items():
            out = tmp / f"{len(stats)}.jsonl"
            stats[name] = generate_responses(target, prompts, out, **common, **kw)
            answers[name] = _responses(out)
    base_name = next(iter(runs))
    base = stats[base_name]["tokens_per_s"]
    print(f"\nKD generation, {len(prompts)} prompts, greedy, max {args.max_new_tokens} new tokens")
    print(
        f"{'run':38s} {'tokens':>7s} {'seconds':>8s} {'tok/s':>8s} {'ratio':>6s} {'same text':>9s}"
    )
    for name, s in stats.items():
        same = sum(answers[name].get(k) == v for k, v in answers[base_name].items())
        print(
            f"{name:38s} {s['generated_tokens']:7d} {s['generate_seconds']:8.1f} "
            f"{s['tokens_per_s']:8.1f} {s['tokens_per_s'] / base:6.2f} "
            f"{same:4d}/{len(answers[base_name]):<4d}"
        )
    print(f"(one-off fp32 IR export of the target: {export_s:.1f} s, not in the figures above)")


if __name__ == "__main__":
    main()
