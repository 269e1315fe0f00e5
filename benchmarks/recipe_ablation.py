"""Draft recipes side by side at one compute budget: `make bench-recipe`.

    python benchmarks/recipe_ablation.py [--minutes 6] [--variants a,b] [--curve]

Reads the default profile's latest `synthetic_kd_dataset`, `tokenized_shards` and `openvino_ir`
(the int8 target) from the artifact root (run `make run` first), then for each recipe variant:
builds the draft (pretrain runner), aligns it on the same KD rows for the same wall-clock budget
(steps set from a short calibration run), exports it to int8 IR, and measures

- held-out greedy acceptance on the KD val rows (what recipes are chosen on: never the eval sets),
- alpha_greedy per evaluation family (int8 draft IR vs int8 target, offline),
- live openvino_genai speedups per family: SD at its best k, prompt lookup at its best k,
- c, the draft's step cost as a fraction of the target's (both alone, plain greedy decoding).

`--curve` also trains the chosen recipe at 1/4, 1/2, 1 and 2 budgets (held-out alpha only), to
show whether data or capacity limits it. Prints markdown tables; writes JSON next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from fastdraft_dag.config.presets import load_profile
from fastdraft_dag.config.schema import Profile
from fastdraft_dag.distill.align import AlignJob, align_draft
from fastdraft_dag.distill.gate import held_out_rows
from fastdraft_dag.distill.kd_rows import end_of_turn_ids, read_rows, response_token_ids
from fastdraft_dag.draft.sizes import DraftSize
from fastdraft_dag.evaluation.live import LiveJob, benchmark_live
from fastdraft_dag.evaluation.offline import OfflineJob, evaluate_offline
from fastdraft_dag.evaluation.results import bench_prompt_set
from fastdraft_dag.openvino import genai
from fastdraft_dag.openvino.export import export_ir
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.resolve import resolve_target, target_key
from fastdraft_dag.training import trainer
from fastdraft_dag.training.config import PretrainConfig, StageConfig
from fastdraft_dag.training.pretrain import pretrain_draft

FAMILIES = ("code", "instructions", "summarization", "text_completion")
SCRATCH = DraftSize(128, 4, 4, 2, 384, max_position_embeddings=2048)


def variants(base: PretrainConfig) -> dict[str, PretrainConfig]:
    """The recipe levers of issue 13, each one step away from the chosen default."""
    derived = replace(base, init="target", stages=(), freeze=("embed", "head"))
    return {
        "scratch-d128x4 (old default)": replace(
            base, init="random", draft=SCRATCH, draft_vocab=None, freeze=(),
            stages=(StageConfig("pretrain", steps=100, batch_size=8, lr=3e-3, warmup_steps=10,
                                eval_every=0),),
        ),  # fmt: skip
        "target-2first-fullvocab": replace(derived, layers=2, draft_vocab=None),
        "target-2first-8k (default)": replace(derived, layers=2, draft_vocab=8192),
        "target-2first-4k": replace(derived, layers=2, draft_vocab=4096),
        "target-2first-8k-headtrained": replace(derived, layers=2, draft_vocab=8192, freeze=("embed",)),
        "target-2spread-8k": replace(derived, layers=2, layer_choice="spread", draft_vocab=8192),
        "target-4first-8k": replace(derived, layers=4, draft_vocab=8192),
    }  # fmt: skip


def in_process(threads: int):
    def train(spec, work: Path) -> dict:
        spec = spec.with_runtime(backend="cpu", threads=threads)
        return trainer.train(spec, log=lambda m: None, report=lambda p: None)

    return train


def build(name, cfg, align, ctx, out: Path, steps: int) -> tuple[Path, dict]:
    """Pretrained then aligned draft in `out`; returns (aligned dir, figures)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    pre = pretrain_draft(
        ctx["target"],
        "target",
        shards=ctx["shards"],
        lineage={},
        cfg=cfg,
        threads=ctx["threads"],
        out=out / "pretrained",
        train=in_process(ctx["threads"]),
        responses=ctx["responses"],
        always_keep=ctx["eot"],
    ).metrics
    job = AlignJob(
        replace(align, stage=replace(align.stage, steps=steps)), 160, 32, 0, "bf16",
        ctx["threads"], tuple(cfg.freeze),
    )  # fmt: skip
    metrics = align_draft(
        ctx["target"],
        "target",
        pretrained=out / "pretrained",
        kd_dir=ctx["kd"],
        shards=None,
        lineage={},
        job=job,
        out=out / "aligned",
        train=in_process(ctx["threads"]),
        log=lambda m: None,
    )
    minutes = (time.perf_counter() - t0) / 60
    return out / "aligned", {
        "variant": name,
        "parameters": pre.get("parameters"),
        "head_rows": pre.get("head_rows", pre.get("vocab_size")),
        "coverage": pre.get("coverage_held_out"),
        "train_tokens": pre.get("tokens", 0) + metrics.get("tokens", 0),
        "build_min": round(minutes, 1),
        "alpha_heldout": round(metrics["gate"]["aligned"]["overall"], 3),
    }


def calibrate(cfg, align, ctx, out: Path, minutes: float) -> int:
    """Align steps that fit `minutes` for this recipe, from a 6-step timing run."""
    _, fig = build("calibration", cfg, align, ctx, out, steps=6)
    metrics = json.loads((out / "aligned" / "metrics.json").read_text())
    per_step = metrics["train_seconds"] / 6
    shutil.rmtree(out, ignore_errors=True)
    return max(6, int(minutes * 60 / per_step))


def step_cost(draft_ir: Path, target_ir: Path, prompts: list, threads: int) -> float:
    """c: seconds per token of the draft alone over the target's, plain greedy on the same ids."""
    from transformers import AutoTokenizer

    from fastdraft_dag.prompts.render import encode_prompt

    tok = AutoTokenizer.from_pretrained(target_ir)
    tensors = genai.to_tensors([encode_prompt(tok, p) for p in prompts])
    props = genai.pipeline_properties("f32", threads)
    speed = {}
    for name, ir in (("draft", draft_ir), ("target", target_ir)):
        pipe = genai.make_pipeline(ir, "CPU", props)
        recs = genai.run_prompts(pipe, tensors, genai.greedy_config(pipe, 48, None), True)
        speed[name] = sum(len(r["tokens"]) for r in recs) / sum(r["seconds"] for r in recs)
    return speed["target"] / speed["draft"]


def evaluate(aligned: Path, fig: dict, ctx, args) -> dict:
    ir = aligned.parent / "draft-int8"
    export_ir(aligned, ir, "int8")
    offline_job = OfflineJob(
        ctx["target"],
        aligned,
        prompts=ctx["offline_prompts"],
        max_new_tokens=64,
        ks=[3],
        threads=ctx["threads"],
        draft_irs={"int8": ir},
        target_precision="int8",
    )
    offline = evaluate_offline(offline_job)
    for r in offline:
        if r["precision"] == "int8" and r["k"] == 3:
            fig[f"alpha_{r['task']}"] = round(r["alpha_greedy"], 3)
    live_job = LiveJob(
        ctx["target_ir"],
        ir,
        prompts=ctx["live_prompts"],
        tokenizer_dir=ctx["target"],
        max_new_tokens=64,
        ks=list(args.ks),
        prompt_lookup=True,
    )
    live = benchmark_live(live_job, threads=ctx["threads"])["rows"]
    for task in (*FAMILIES, "all"):
        sd = [r for r in live if r["task"] == task and r["mode"] == "sd"]
        pl = [r for r in live if r["task"] == task and r["mode"] == "prompt_lookup"]
        if sd:
            best = max(sd, key=lambda r: r["speedup"])
            fig[f"sd_{task}"] = f"{best['speedup']:.2f}x (k={best['k']})"
        if pl and task == "all":
            best = max(pl, key=lambda r: r["speedup"])
            fig["prompt_lookup_all"] = f"{best['speedup']:.2f}x (k={best['k']})"
    fig["c"] = round(step_cost(ir, ctx["target_ir"], ctx["live_prompts"][:4], ctx["threads"]), 3)
    return fig


def _latest_or_none(store: ArtifactStore, asset: str, key: str) -> Path | None:
    try:
        return store.latest(asset, key).path
    except FileNotFoundError:
        return None


def kd_context(root: Path) -> tuple[Profile, dict, list[dict]]:
    """The default profile, its built target, KD answers and shards under `root`, and the KD
    rows: what every ablation trains on."""
    from transformers import AutoTokenizer

    profile = load_profile("default")
    store = ArtifactStore(root)
    key = target_key(profile.target)
    target = resolve_target(profile.target, root / "targets").path
    kd = store.latest("synthetic_kd_dataset", key).path
    tok = AutoTokenizer.from_pretrained(target)
    rows = read_rows(kd / "kd.jsonl")[0]
    ctx = {
        "target": target, "kd": kd, "threads": profile.threads,
        "shards": _latest_or_none(store, "tokenized_shards", key),
        "responses": response_token_ids(rows, tok), "eot": end_of_turn_ids(target, tok),
    }  # fmt: skip
    return profile, ctx, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--root", type=Path, default=Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    )
    ap.add_argument("--minutes", type=float, default=6.0, help="alignment budget per variant")
    ap.add_argument("--variants", default="", help="comma-separated prefixes; default: all")
    ap.add_argument("--prompts", type=int, default=8, help="live prompts per family")
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4])
    ap.add_argument("--curve", action="store_true", help="budget curve for the chosen recipe")
    args = ap.parse_args()
    profile, ctx, rows = kd_context(args.root)
    irs = ArtifactStore(args.root).latest("openvino_ir", target_key(profile.target)).path
    ctx |= {
        "target_ir": irs / f"target-{profile.export.target_format}",
        "offline_prompts": bench_prompt_set(profile.bench.prompts_per_family)[0],
        "live_prompts": bench_prompt_set(args.prompts)[0],
    }
    work = args.root / "ablation"
    chosen = [v for v in variants(profile.pretrain).items()
              if not args.variants or any(v[0].startswith(p) for p in args.variants.split(","))]  # fmt: skip
    table = []
    for name, cfg in chosen:
        slug = "".join(c if c.isalnum() else "-" for c in name)
        steps = calibrate(cfg, profile.align, ctx, work / f"{slug}-cal", args.minutes)
        aligned, fig = build(name, cfg, profile.align, ctx, work / slug, steps)
        table.append(evaluate(aligned, {**fig, "align_steps": steps}, ctx, args))
        print(md_table(table), flush=True)
        (work / "ablation.json").write_text(json.dumps(table, indent=2))
    if args.curve:
        cfg = profile.pretrain
        curve = []
        for factor in (0.25, 0.5, 1.0, 2.0):
            steps = max(6, int(profile.align.stage.steps * factor))
            _, fig = build(f"x{factor}", cfg, profile.align, ctx, work / f"curve-{factor}", steps)
            curve.append({"budget": factor, "align_steps": steps, **fig})
            print(md_table(curve), flush=True)
        (work / "curve.json").write_text(json.dumps(curve, indent=2))
    held = len(held_out_rows(rows, profile.align.val_fraction))
    print(f"\nheld-out KD rows: {held}; live prompts per family: {args.prompts}; budget "
          f"{args.minutes} min of alignment per variant (2 cores)")  # fmt: skip


if __name__ == "__main__":
    main()
