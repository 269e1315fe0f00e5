"""Training throughput: our CPU trainer vs a plain Hugging Face `Trainer` with default arguments.

Same model: the `default` profile's draft shape (d128 x 4 Llama, SmolLM2's 49,152-token vocabulary,
tied embedding), same initial weights. Same data: the default profile's tokenized shards when
`make run` has built them (`artifacts/tokenized_shards/...`), otherwise synthetic token rows of the
same shape (512 tokens; throughput does not depend on which tokens). Same threads. Each trainer
runs in its own fresh process at 8 sequences x 512 tokens per step (the HF default
`per_device_train_batch_size=8`; ours uses the same batch). The two alternate for `--rounds`
rounds (HF, ours, HF, ours, ...) and each keeps its best round: on a shared machine another
process can only slow a round down, and alternating gives both the same chances.

Step times are wall time between consecutive step ends (HF: `on_step_end` timestamps from a
callback; ours: the per-step rows of `train_log.jsonl`), so start-up, the first step and the final
save are left out of both. Reported per trainer: tokens/s at the median step time and at the best
step time (a shared machine only ever slows a step down, so the best step is the closest to the
uncontended speed), each the best over the rounds.
MFU uses one formula (`fastdraft_dag.training.throughput.flops_per_step`) and one peak for both:
a square fp32 GEMM measured here with the same threads (an achievable peak, not a datasheet one).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--threads 2]
        [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fastdraft_dag.core import shards
from fastdraft_dag.draft.config import PRESETS
from fastdraft_dag.training.throughput import flops_per_step, measure_gemm_flops

VOCAB, SEQ_LEN, BATCH = 49152, 512, 8
ROOT = Path(__file__).resolve().parents[1]


def write_init(path: Path) -> None:
    """The default profile's draft shape with SmolLM2's vocabulary and RoPE, seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    size = PRESETS["small-d128"]
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_layers, num_attention_heads=size.num_heads,
        num_key_value_heads=size.num_kv_heads, head_dim=size.hidden_size // size.num_heads,
        max_position_embeddings=2048, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)


def find_shards() -> Path | None:
    """The default profile's shards, if built (seq_len 512, SmolLM2 vocabulary)."""
    base = ROOT / "artifacts" / "tokenized_shards"
    for pointer in sorted(base.glob("*/LATEST")):
        root = pointer.parent / pointer.read_text().strip()
        try:
            index = shards.read_index(root)
        except (FileNotFoundError, ValueError):
            continue
        if index["seq_len"] == SEQ_LEN and index["vocab_size"] == VOCAB:
            return root
    return None


def synthetic_shards(root: Path, rows: int = 512) -> Path:
    rng = np.random.default_rng(0)
    entries = [
        shards.write_shard(root, "text", split, 0, rng.integers(0, VOCAB, (n, SEQ_LEN), np.uint16))
        for split, n in (("train", rows), ("validation", BATCH))
    ]
    shards.write_index(root, {"seq_len": SEQ_LEN, "dtype": "<u2", "eos_id": 0,
                              "vocab_size": VOCAB, "shards": entries, "tokens": {}})  # fmt: skip
    return root


def step_seconds(ends: list[float]) -> tuple[float, float]:
    """(median, best) seconds per step from step-end timestamps; the first step is excluded."""
    steps = np.diff(np.asarray(ends))
    return float(np.median(steps)), float(steps.min())


def worker_ours(init: Path, data: Path, steps: int, threads: int, out: Path) -> dict:
    from fastdraft_dag.training.trainer import train

    stage = {"name": "pretrain", "steps": steps, "batch_size": BATCH, "lr": 3e-3, "min_lr": 3e-4,
             "warmup_steps": 2, "eval_every": 0, "eval_batches": 1,
             "data": {"kind": "packed", "root": str(data), "mix": {"text": 1.0}}}  # fmt: skip
    spec = {"backend": "cpu", "init_dir": str(init), "out_dir": str(out), "threads": threads,
            "dtype": "bf16", "seed": 0, "stages": [stage]}  # fmt: skip
    metrics = train(spec, lambda m: None, lambda p: None)
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    ends = [r["t"] for r in rows if r["kind"] == "train"]
    return {"ends": ends, "precision": "bf16" if metrics["bf16_autocast"] else "fp32"}


def worker_hf(init: Path, data: Path, steps: int, threads: int, out: Path) -> dict:
    """transformers.Trainer with default TrainingArguments (only output_dir and max_steps set)."""
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    torch.set_num_threads(threads)
    rows = shards.load_split(data, "text", "train")

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            ids = torch.from_numpy(rows[i].astype(np.int64))
            return {"input_ids": ids, "labels": ids}

    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            ends.append(time.perf_counter())

    model = AutoModelForCausalLM.from_pretrained(init)
    args = TrainingArguments(output_dir=str(out), max_steps=steps)
    Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[StepClock()]).train()
    return {"ends": ends, "precision": "bf16" if args.bf16 else "fp32"}


def run_worker(kind: str, init: Path, data: Path, steps: int, threads: int, out: Path) -> dict:
    """One trainer in a fresh process and a fresh output dir; returns its step-end timestamps."""
    cmd = [sys.executable, __file__, "--worker", kind, "--init", str(init), "--data", str(data),
           "--steps", str(steps), "--threads", str(threads), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", choices=["ours", "hf"])
    parser.add_argument("--init", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.worker:
        fn = worker_ours if args.worker == "ours" else worker_hf
        print(json.dumps(fn(args.init, args.data, args.steps, args.threads, args.out)))
        return
    compare(args.steps, args.threads, args.rounds)


def compare(steps: int, threads: int, rounds: int) -> None:
    from transformers import AutoConfig

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        write_init(tmp / "init")
        data = find_shards()
        source = f"default profile shards {data}" if data else "synthetic tokens (no shards built)"
        data = data or synthetic_shards(tmp / "shards")
        peak = measure_gemm_flops(torch.device("cpu"), torch.float32)
        config = AutoConfig.from_pretrained(tmp / "init")
        tokens = BATCH * SEQ_LEN
        flops = flops_per_step(config, SEQ_LEN, tokens, BATCH * (SEQ_LEN - 1))
        print(f"model: default draft shape d128x4, vocab {VOCAB}; data: {source}")
        print(f"{steps} steps x {BATCH} x {SEQ_LEN} tokens, {threads} threads, best of {rounds} "
              f"alternating rounds; peak (best fp32 GEMM) {peak / 1e9:.1f} GFLOP/s\n")  # fmt: skip
        best: dict[str, dict[str, float]] = {}
        seen: dict[str, list[str]] = {"hf": [], "ours": []}
        precision: dict[str, str] = {}
        for i in range(rounds):
            for kind in ("hf", "ours"):
                got = run_worker(kind, tmp / "init", data, steps, threads, tmp / f"{kind}-{i}")
                median, fastest = step_seconds(got["ends"])
                seen[kind].append(f"{tokens / median:,.0f}")
                precision[kind] = got["precision"]
                mine = best.setdefault(kind, {"median": median, "best": fastest})
                mine["median"], mine["best"] = (
                    min(mine["median"], median),
                    min(mine["best"], fastest),
                )
        print("| trainer | precision | s/step (median) | tokens/s (median) | tokens/s (best step) "
              "| MFU (median) | tokens/s per round (median) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        names = {"hf": "HF Trainer, default args", "ours": "fastdraft trainer (cpu)"}
        for kind, b in best.items():
            print(f"| {names[kind]} | {precision[kind]} | {b['median']:.2f} | "
                  f"{tokens / b['median']:,.0f} | {tokens / b['best']:,.0f} | "
                  f"{flops / b['median'] / peak:.1%} | {', '.join(seen[kind])} |")  # fmt: skip
        ratio = best["hf"]["median"] / best["ours"]["median"]
        ratio_best = best["hf"]["best"] / best["ours"]["best"]
        print(
            f"\nspeedup (tokens/s, ours / HF): {ratio:.2f}x at the median step, "
            f"{ratio_best:.2f}x at the best step"
        )


if __name__ == "__main__":
    main()
