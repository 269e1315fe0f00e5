"""Teacher-forced scoring with an OpenVINO IR: the exported draft's acceptance, per precision.

Quantization can silently cost acceptance, so every exported draft IR is scored on the same
target continuations as the PyTorch draft. A whole sequence goes through the IR in one ``infer``
(the prefill path), compiled with the f32 inference hint so that the only precision loss is the
weights' (fp16/int8/int4), not bf16 activations the CPU plugin would otherwise pick. No Dagster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

IR_FILE = "openvino_model.xml"
# Nominal weight bytes per parameter for MBSU's r. int4 ignores group scales/zero points and the
# layers NNCF keeps in 8 bits, so it slightly understates what an int4 IR really reads.
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}


def bytes_per_param(precision: str) -> float:
    """Weight bytes per parameter of a precision label (``torch-fp32`` counts as fp32)."""
    name = precision.removeprefix("torch-")
    if name not in BYTES_PER_PARAM:
        raise ValueError(
            f"precision {precision!r}: unknown; expected one of {sorted(BYTES_PER_PARAM)}"
        )
    return BYTES_PER_PARAM[name]


def ir_model_file(ir_dir: Path) -> Path:
    """The IR's model file, or a FileNotFoundError naming the missing path."""
    xml = Path(ir_dir) / IR_FILE
    if not xml.is_file():
        raise FileNotFoundError(f"OpenVINO IR not found: {xml} does not exist")
    return xml


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, shifted by the row max for stability."""
    z = np.asarray(logits, dtype=np.float32)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class IRScorer:
    """One compiled IR and one infer request, reused across sequences.

    The optimum-intel IR is stateful (its KV cache lives in the request), so the state is reset
    before every sequence: otherwise the second sequence would attend to the first.
    """

    def __init__(self, ir_dir: Path, device: str = "CPU", threads: int | None = None) -> None:
        import openvino as ov

        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            props["INFERENCE_NUM_THREADS"] = int(threads)
        self.ir_dir = Path(ir_dir)
        self.compiled = ov.Core().compile_model(str(ir_model_file(ir_dir)), device, props)
        self.request = self.compiled.create_infer_request()
        self.inputs = {n for port in self.compiled.inputs for n in port.get_names()}

    def logits(self, seq: list[int]) -> np.ndarray:
        """Logits at every position of ``seq`` (shape [len(seq), vocab]), one fresh pass."""
        ids = np.asarray([seq], dtype=np.int64)
        feed = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "position_ids": np.arange(ids.shape[1], dtype=np.int64)[None, :],
            "beam_idx": np.zeros(1, dtype=np.int32),
        }
        self.request.reset_state()
        result = self.request.infer({k: v for k, v in feed.items() if k in self.inputs})
        logits = np.asarray(result[self.compiled.output("logits")])[0]
        if logits.shape[0] != len(seq):
            raise RuntimeError(
                f"IR {self.ir_dir} returned logits for {logits.shape[0]} of {len(seq)} positions"
            )
        return logits

    def __call__(self, seq: list[int], n_prompt: int) -> tuple[np.ndarray, np.ndarray]:
        """Argmax and softmax at the positions that predict the continuation (like PyTorch's)."""
        logits = self.logits(seq)[n_prompt - 1 : len(seq) - 1]
        return logits.argmax(-1), softmax(logits)
