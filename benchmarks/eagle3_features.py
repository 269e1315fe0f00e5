"""What one EAGLE-3 training token costs in target compute, by engine: `make bench-eagle3-features`.

    python benchmarks/eagle3_features.py [--rows 32] [--batch 8]

The head's training loop runs the frozen target on every batch (the three tapped layer outputs
and the teacher's distribution), and on 2 cores that forward is most of a step. This times that
forward per token, side by side on the same KD rows, interleaved: the PyTorch fp32 target the
loop uses today (`draft.eagle3.TargetTaps`, with the final hidden states and the head's logits
over the 8k draft rows, as `loss: fkl` needs) against the same target as an OpenVINO IR with the
tapped layers added as outputs (fp32, and the int8 IR the benchmark decodes with), so the note
can say how many more training tokens per hour the IR route would buy. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from recipe_ablation import kd_context

from fastdraft_dag.distill.generation import kd_target_ir
from fastdraft_dag.draft.eagle3 import TargetTaps
from fastdraft_dag.openvino.eagle3 import layer_output_nodes
from fastdraft_dag.reporting.tables import md_table
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.resolve import target_key


def _batches(rows: list[dict], tok, n: int, batch: int, length: int) -> list[np.ndarray]:
    """`n` KD rows (prompt + answer) of at least `length` tokens, cut to it: no padding."""
    seqs = (tok(r["prompt"] + r["response"], add_special_tokens=False)["input_ids"] for r in rows)
    long = [s[:length] for s in seqs if len(s) >= length][:n]
    return [
        np.asarray(long[i : i + batch], dtype=np.int64)
        for i in range(0, len(long) - batch + 1, batch)
    ]


def torch_forward(target_dir: Path, layers: list[int], kept: torch.Tensor, threads: int):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(target_dir, torch_dtype=torch.float32)
    taps = TargetTaps(model, layers)

    def run(ids: np.ndarray) -> None:
        x = torch.from_numpy(ids)
        feats, last = taps(x, torch.ones_like(x), final=True)
        taps.head_logits(last, kept).softmax(-1)

    return run


def ov_forward(ir_dir: Path, layers: list[int], threads: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(ir_dir / "openvino_model.xml"))
    model.add_outputs(layer_output_nodes(model, layers))
    props = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    request = core.compile_model(model, "CPU", props).create_infer_request()
    names = {p.get_any_name() for p in model.inputs}

    def run(ids: np.ndarray) -> None:
        b, n = ids.shape
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones((b, n), dtype=np.int64),
            "position_ids": np.tile(np.arange(n, dtype=np.int64), (b, 1)),
            "beam_idx": np.arange(b, dtype=np.int32),
        }
        request.reset_state()
        request.infer({k: v for k, v in feed.items() if k in names})

    return run


def main() -> None:
    from transformers import AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--root", type=Path, default=Path(os.environ.get("FASTDRAFT_HOME", "artifacts"))
    )
    ap.add_argument("--rows", type=int, default=48, help="KD rows timed per engine")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=192, help="tokens per row (KD rows ~100-400)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    profile, ctx, rows = kd_context(args.root)
    key = target_key(profile.target)
    irs = ArtifactStore(args.root).latest("openvino_ir", key).path
    head = ArtifactStore(args.root).latest("eagle3_head", key).path
    layers = json.loads((head / "eagle3_layers.json").read_text())["layers"]
    kept = torch.arange(profile.eagle3.draft_vocab)  # the cost, not the rows, matters here
    batches = _batches(
        rows, AutoTokenizer.from_pretrained(ctx["target"]), args.rows, args.batch, args.length
    )
    tokens = sum(b.size for b in batches)
    engines = {"PyTorch fp32 (today's loop)": torch_forward(ctx["target"], layers, kept, 2)}
    fp32_ir = kd_target_ir(ctx["target"], args.root / "ablation-eagle3" / "target-fp32", "openvino")
    for name, path in (("OpenVINO fp32 IR", fp32_ir), ("OpenVINO int8 IR", irs / "target-int8")):
        engines[name] = ov_forward(path, layers, 2)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for run in engines.values():
        run(batches[0])  # warm-up
    for _ in range(args.repeats):  # interleaved: a noisy neighbour hits every engine alike
        for name, run in engines.items():
            t0 = time.perf_counter()
            for b in batches:
                run(b)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times[next(iter(engines))])
    table = [
        {
            "engine": name,
            "tokens/s": round(tokens / statistics.median(t)),
            "vs PyTorch": f"{base / statistics.median(t):.2f}x",
            "spread (min-max s)": f"{min(t):.2f}-{max(t):.2f}",
        }
        for name, t in times.items()
    ]
    print(md_table(table))
    print(
        f"\n{tokens} tokens in {len(batches)} batches of {args.batch} rows; layers {layers}; "
        f"median of {args.repeats} interleaved repeats; 2 threads"
    )


if __name__ == "__main__":
    main()
