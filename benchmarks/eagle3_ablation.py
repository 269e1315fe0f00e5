"""EAGLE-3 head levers side by side at one step budget: `make bench-eagle3`.

    python benchmarks/eagle3_ablation.py [--steps 60] [--variants a,b] [--curve]

Reads the default profile's latest `synthetic_kd_dataset` and `tokenized_shards` from the
artifact root (run `make run` first), then trains one head per variant with the same runner as
the `eagle3_head` asset (`distill.eagle3.train_head`, in process) for the same number of steps
of the same batch, and measures each on the held-out KD rows: tau at k = 1 and k = 3 (1 + the
mean accepted chain, teacher-forced on the target's own features, greedy) and the per-step
acceptance. Variants: unroll length (ttt_steps), head vocabulary size, and corpus features mixed
into the KD answers (the target prefilling corpus text instead of generating answers).

`--curve` also trains the default head at 1/2 and 2 budgets: acceptance against training
tokens, to show whether data or capacity limits it (as recipe_ablation.py does for the
standalone draft). Offline figures only: nothing here is timed on the evaluation prompts, so it
may run beside other work. Prints markdown tables; writes JSON under <root>/ablation-eagle3/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from recipe_ablation import in_process, kd_context

from fastdraft_dag.distill.config import Eagle3Config
from fastdraft_dag.distill.eagle3 import Corpus, Eagle3Job, train_head
from fastdraft_dag.distill.gate import held_out_rows
from fastdraft_dag.reporting.tables import md_table

CORPUS_SHARE = 0.5


def variants(base: Eagle3Config) -> dict[str, tuple[Eagle3Config, bool]]:
    """(config, mix corpus features in) per lever, each one step away from the default."""
    return {
        "ttt3-8k (default)": (base, False),
        "ttt1-8k": (replace(base, ttt_steps=1), False),
        "ttt3-4k": (replace(base, draft_vocab=4096), False),
        "ttt3-16k": (replace(base, draft_vocab=16384), False),
        "ttt3-8k+corpus": (base, True),
    }


def build(name: str, cfg: Eagle3Config, corpus: bool, ctx: dict, out: Path, steps: int) -> dict:
    """One head trained for `steps` in `out`; its offline figures."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cfg = replace(cfg, stage=replace(cfg.stage, steps=steps, warmup_steps=min(20, steps // 5)))
    if corpus and ctx["shards"] is None:
        raise SystemExit("the corpus variant needs tokenized_shards: run `make run` first")
    mixed = Corpus(ctx["shards"], CORPUS_SHARE, dict(cfg.stage.mix)) if corpus else None
    t0 = time.perf_counter()
    m = train_head(
        target_dir=ctx["target"], target_name="target", kd_dir=ctx["kd"],
        responses=ctx["responses"], always_keep=ctx["eot"], lineage={},
        job=Eagle3Job(eagle3=cfg, threads=ctx["threads"]), out=out,
        train=in_process(ctx["threads"]), log=lambda msg: None, corpus=mixed,
    )  # fmt: skip
    off = m["offline"]
    fig = {
        "variant": name,
        "steps": steps,
        "train_tokens": m.get("tokens", 0),
        "build_min": round((time.perf_counter() - t0) / 60, 1),
        "coverage": m.get("coverage_held_out"),
        "tau_k1": round(off["tau_k1"], 3),
        "tau_k3": round(off["tau_k3"], 3),
        "alpha_step0-2": " / ".join(f"{a:.2f}" for a in off["alpha_by_step"][:3]),
    }
    for task, f in off.get("by_task", {}).items():
        fig[f"tau_k3_{task}"] = round(f["tau_k3"], 3)
    return fig


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--root", type=Path, default=Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    )
    ap.add_argument("--steps", type=int, default=60, help="training steps per variant")
    ap.add_argument("--variants", default="", help="comma-separated prefixes; default: all")
    ap.add_argument("--curve", action="store_true", help="budget curve for the default head")
    args = ap.parse_args()
    profile, ctx, rows = kd_context(args.root)
    base, held = profile.eagle3, len(held_out_rows(rows, profile.eagle3.val_fraction))
    work = args.root / "ablation-eagle3"
    chosen = [v for v in variants(base).items()
              if not args.variants or any(v[0].startswith(p) for p in args.variants.split(","))]  # fmt: skip
    saved = work / "ablation.json"  # rows of earlier runs stay unless their variant is rerun
    names = {name for name, _ in chosen}
    table = [r for r in _load(saved) if r["variant"] not in names and r["steps"] == args.steps]
    for name, (cfg, corpus) in chosen:
        slug = "".join(c if c.isalnum() else "-" for c in name)
        table.append(build(name, cfg, corpus, ctx, work / slug, args.steps))
        print(md_table(table), flush=True)
        saved.write_text(json.dumps(table, indent=2))
    if args.curve:  # the 1x point is the default variant above
        curve = [
            {**row, "variant": "x1.0"} for row in table if row["variant"].endswith("(default)")
        ]
        for factor in (0.5, 2.0):
            steps = max(4, int(args.steps * factor))
            curve.append(build(f"x{factor}", base, False, ctx, work / f"curve-{factor}", steps))
            print(md_table(curve), flush=True)
        (work / "curve.json").write_text(json.dumps(curve, indent=2))
    print(f"\nheld-out KD rows: {held}; {args.steps} steps of batch {base.stage.batch_size} "
          f"per variant (2 cores); corpus share {CORPUS_SHARE}")  # fmt: skip


if __name__ == "__main__":
    main()
