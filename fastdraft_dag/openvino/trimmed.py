"""Export a trimmed-head draft as an IR whose logits are full-vocabulary again.

openvino_genai's standalone-draft path compares draft and target token ids over one vocabulary,
so the draft IR must return [batch, seq, full_vocab] logits. The draft is traced with its K-row
head, and the `logits` Result is rewired through ScatterUpdate(fill, kept_ids, logits_K, axis 2)
with a large negative fill: a dropped id can never be the argmax, and its probability is exactly 0
after a softmax in f32 and f16.

openvino_genai's slice-before-MatMul pass looks for the head MatMul right before the logits; the
scatter hides it, so prefill computes the (K-row, so 6x cheaper) head for every prompt position
instead of the last one only. That keeps every position's logits for offline IR scoring; the TTFT
it costs is measured by the live benchmark.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag.draft.derived import FILL, load_draft
from fastdraft_dag.draft.vocab import load_vocab

IR_FILE = "openvino_model.xml"
INT4_GROUP_SIZE = 64


def logits_result(model: Any) -> Any:
    for res in model.get_results():
        if "logits" in res.output(0).get_names() or "logits" in res.input_value(0).get_names():
            return res
    return model.get_results()[0]


def add_full_vocab_scatter(model: Any, kept_ids: np.ndarray, vocab_size: int) -> Any:
    """Rewire the logits Result of `model` (an ov.Model with K-wide logits) to full width."""
    import openvino as ov
    from openvino import opset13 as ops

    res = logits_result(model)
    src = res.input_value(0)
    k = src.get_partial_shape()[-1]
    if k.is_static and k.get_length() != len(kept_ids):
        raise ValueError(f"the IR has {k.get_length()} logits, draft_vocab.json {len(kept_ids)}")
    logits = src if src.get_element_type() == ov.Type.f32 else ops.convert(src, "f32").output(0)
    lead = ops.gather(
        ops.shape_of(logits, "i64"), np.array([0, 1], np.int64), np.array(0, np.int64)
    )
    full_shape = ops.concat([lead, ops.constant(np.array([vocab_size], np.int64))], 0)
    base = ops.broadcast(ops.constant(np.array(FILL, np.float32)), full_shape)
    scatter = ops.scatter_update(
        base,
        ops.constant(np.asarray(kept_ids, np.int64)),
        logits,
        ops.constant(np.array(2, np.int64)),
    )
    names = set(src.get_names()) | set(res.output(0).get_names()) | {"logits"}
    src.get_tensor().set_names(set())
    scatter.output(0).get_tensor().set_names(names)
    res.input(0).replace_source_output(scatter.output(0))
    model.validate_nodes_and_infer_types()
    return model


def _compress(model: Any, weight_format: str) -> Any:
    """NNCF weight compression as `export.py` asks optimum for it (int8 asym, int4 group 64)."""
    if weight_format not in ("int8", "int4"):
        return model
    import nncf

    if weight_format == "int8":
        return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    return nncf.compress_weights(
        model, mode=nncf.CompressWeightsMode.INT4_ASYM, ratio=1.0, group_size=INT4_GROUP_SIZE
    )


def is_trimmed(model_dir: Path) -> bool:
    return load_vocab(Path(model_dir)) is not None


def export_trimmed(model_dir: Path, out: Path, weight_format: str) -> None:
    """Trace the trimmed draft, add the scatter, compress, save `out/openvino_model.xml`."""
    import openvino as ov
    from optimum.exporters.openvino import export_from_model

    kept, vocab_size = load_vocab(Path(model_dir))
    model = load_draft(model_dir, trimmed=True)
    model.config.use_cache = True
    raw = out.with_name(out.name + ".raw")
    shutil.rmtree(raw, ignore_errors=True)
    try:
        export_from_model(model, raw, task="text-generation-with-past", stateful=True)
        ov_model = ov.Core().read_model(str(raw / IR_FILE))
        ov_model = _compress(add_full_vocab_scatter(ov_model, kept, vocab_size), weight_format)
        out.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(out / IR_FILE), compress_to_fp16=weight_format == "fp16")
        for name in ("config.json", "generation_config.json"):
            if (raw / name).is_file():
                shutil.copy(raw / name, out / name)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    shutil.copy(Path(model_dir) / "draft_vocab.json", out / "draft_vocab.json")
