"""EAGLE-3 heads on OpenVINO: IR export, layer taps, live decoding.

A head directory (draft/eagle3.py: optimum-intel's `LlamaEagle3ForCausalLM` layout) exports
through optimum-intel (`export_head`, called by `export.export_ir`) to a stateful IR with a
``hidden_states`` input and a ``d2t`` output, rt_info ``eagle3_mode`` and, unless the head reads
the runtime's default layers, ``hidden_layers_list``; ``eagle3_draft`` hands it to
``openvino_genai``. At load time the runtime taps three decoder
layer outputs of the *target* IR; ``tapped_hidden_states`` reads the same nodes so a parity test
can pin which HF ``hidden_states`` index a trained head must see. No Dagster here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from fastdraft_dag.draft.eagle3 import load_head, rt_info_layers
from fastdraft_dag.openvino.genai import make_pipeline, target_passes

LAYER_ADD = re.compile(r"layers\.(\d+)/")  # friendly name of a decoder layer's own ops


def _rt_layers(layers: list[int]) -> str:
    """``hidden_layers_list`` as rt_info: space-separated, what ov::Any parses to vector<int>.

    The Python kwarg route fails ("hidden_layers_list must be a vector of int32_t values") and
    "[0, 1, 2]" fails to parse (stoi on "[0,").
    """
    return " ".join(str(i) for i in layers)


def export_head(head_dir: Path, out: Path, weight_format: str, quantization: Any) -> None:
    """Trace a head directory through optimum-intel into `out`, rt_info set: `eagle3_mode`, and
    `hidden_layers_list` unless the head reads the runtime's default layers."""
    from optimum.intel import OVModelForCausalLM

    layers = rt_info_layers(Path(head_dir))
    # trust_remote_code only lets optimum load its *own* installed LlamaEagle3ForCausalLM: for
    # EAGLE-3 configs it points auto_map at optimum/exporters/openvino/model_patcher.py.
    model = OVModelForCausalLM.from_pretrained(
        str(head_dir),  # a Path trips optimum's hub-cache lookup (str.replace on the id)
        export=True,
        compile=False,
        local_files_only=True,
        trust_remote_code=True,
        quantization_config=quantization,
    )
    if weight_format == "fp16":
        model.half()
    model.model.set_rt_info("True", ["eagle3_mode"])
    if layers is not None:
        model.model.set_rt_info(_rt_layers(layers), ["hidden_layers_list"])
    model.save_pretrained(out)


def ir_io_names(ir_dir: Path) -> dict[str, list[str]]:
    """Input and output tensor names of an IR (the head: ``hidden_states`` in, ``d2t`` out)."""
    import openvino as ov

    model = ov.Core().read_model(str(Path(ir_dir) / "openvino_model.xml"))
    return {
        "inputs": [p.get_any_name() for p in model.inputs],
        "outputs": [p.get_any_name() for p in model.outputs],
    }


def hidden_states_width(ir_dir: Path) -> int:
    """Width the head's ``hidden_states`` input takes (3*Ht): the K of the ``fc`` MatMul it feeds.

    The input itself is exported fully dynamic, so the width is read from ``fc``'s weight.
    """
    import openvino as ov

    model = ov.Core().read_model(str(Path(ir_dir) / "openvino_model.xml"))
    param = next(p for p in model.get_parameters() if p.get_friendly_name() == "hidden_states")
    for target in param.output(0).get_target_inputs():
        node = target.get_node()
        if node.get_type_name() == "MatMul":
            shape = node.input(1).get_source_output().get_partial_shape().to_shape()
            return int(shape[1] if node.get_attributes()["transpose_b"] else shape[0])
    raise ValueError(f"{ir_dir}: hidden_states feeds no MatMul (fc)")


def layer_output_nodes(model: Any, layers: list[int]) -> list[Any]:
    """Each decoder layer's output: the residual Add that takes the layer's MLP output.

    Matches friendly names ``...layers.<i>/...Add`` with an input from ``layers.<i>.mlp``, which
    is how optimum names traced Llama layers (weight compression keeps the names).
    """
    found: dict[int, Any] = {}
    for op in model.get_ordered_ops():
        m = LAYER_ADD.search(op.get_friendly_name())
        if op.get_type_name() != "Add" or m is None:
            continue
        idx = int(m.group(1))
        srcs = [op.input(i).get_source_output().get_node().get_friendly_name() for i in (0, 1)]
        if any(f"layers.{idx}.mlp." in s for s in srcs):
            found[idx] = op.output(0)
    missing = sorted(set(layers) - set(found))
    if missing:
        raise ValueError(f"no residual Add found for layers {missing} (found {sorted(found)})")
    return [found[i] for i in layers]


def tapped_hidden_states(target_ir_dir: Path, ids: list[int], layers: list[int]) -> np.ndarray:
    """The target IR's outputs of ``layers`` on ``ids``, concatenated: [len(ids), 3*Ht] float32.

    Compiled with the f32 hint on CPU, so it is comparable to HF fp32 hidden states.
    """
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(Path(target_ir_dir) / "openvino_model.xml"))
    taps = layer_output_nodes(model, layers)
    model.add_outputs(taps)  # a repeated layer is added once; look outputs up by node below
    position = {_port_key(o.get_node().input_value(0)): i for i, o in enumerate(model.outputs)}
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    n = len(ids)
    feed = {
        "input_ids": np.asarray([ids], dtype=np.int64),
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),
    }
    names = {p.get_any_name() for p in model.inputs}
    result = compiled.create_infer_request().infer({k: v for k, v in feed.items() if k in names})
    tapped = [result[compiled.outputs[position[_port_key(t)]]][0] for t in taps]
    return np.concatenate(tapped, axis=-1).astype(np.float32)


def _port_key(port: Any) -> tuple[str, int]:
    """A node output's identity: its node's friendly name and its output index."""
    return port.get_node().get_friendly_name(), port.get_index()


def eagle3_pipeline(target_ir: Path, head_ir_dir: Path, device: str, properties: dict) -> Any:
    """Target + EAGLE-3 head pipeline (continuous batching on CPU), both with ``properties``.

    openvino_genai reads EAGLE-3 mode and the tapped layers from the head IR's rt_info, so the
    pipeline is an ordinary draft pipeline; a directory without ``eagle3_mode`` is refused here
    rather than run as a standalone draft.
    """
    import openvino as ov

    model = ov.Core().read_model(str(Path(head_ir_dir) / "openvino_model.xml"))
    if not model.has_rt_info("eagle3_mode"):
        raise ValueError(f"{head_ir_dir} is not an EAGLE-3 head IR (no rt_info eagle3_mode)")
    return make_pipeline(target_ir, device, properties, draft_ir=head_ir_dir)


def sd_counts(result: Any) -> dict[str, int | None]:
    """Target passes and accepted draft tokens of one EAGLE-3 generation.

    ``passes`` is ``genai.target_passes`` (None when the runtime's per-pass record does not add
    up) and ``accepted`` = tokens - passes, since each pass emits its accepted drafts plus one.
    ``metric_accepted``/``drafted`` are ``extended_perf_metrics``' counts: the former misses the
    last step's accepted tokens when generation stops at max_new_tokens (14 vs 15 seen).
    """
    tokens = len(result.tokens[0])
    passes = target_passes(result, tokens)
    ext = result.extended_perf_metrics
    return {
        "tokens": tokens,
        "passes": passes,
        "accepted": None if passes is None else tokens - passes,
        "metric_accepted": int(ext.get_num_accepted_tokens()),
        "drafted": int(ext.get_num_draft_tokens()),
    }


def check_head_ir(
    head_dir: Path, ir_dir: Path, probe: list[int], tolerance: float, device: str = "CPU"
) -> dict:
    """The head IR's first-step logits against PyTorch's on the same features: catches a broken
    or mis-quantized export, as `export.check_ir_logits` does for a causal LM.

    Features are seeded noise at the scale of hidden states (the check is the export's
    arithmetic, not the target's); the IR reads token t+1 with the features of position t, as
    the runtime feeds it, which is step 0 of the head's `unroll`.
    """
    import openvino as ov
    import torch

    head = load_head(Path(head_dir))
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([probe])
    feats = torch.randn(1, len(probe), head.fc.in_features, generator=gen)
    with torch.no_grad():
        ref = head.logits(head.unroll(ids, feats, 1)[0])[0, :-1].numpy()
    n = len(probe) - 1
    feed = {
        "input_ids": ids[:, 1:].numpy(),
        "hidden_states": feats[:, :-1].numpy(),
        "attention_mask": np.ones((1, n), dtype=np.int64),
        "position_ids": np.arange(n, dtype=np.int64)[None],
        "beam_idx": np.zeros(1, dtype=np.int32),
    }
    core = ov.Core()
    compiled = core.compile_model(
        str(Path(ir_dir) / "openvino_model.xml"), device, {"INFERENCE_PRECISION_HINT": "f32"}
    )
    got = np.asarray(compiled.create_infer_request().infer(feed)[compiled.output("logits")])[0]
    max_abs = float(np.abs(got[-1] - ref[-1]).max())
    agree = int(got[-1].argmax()) == int(ref[-1].argmax())
    return {
        "max_abs_diff": max_abs,
        "argmax_ir": int(got[-1].argmax()),
        "argmax_torch": int(ref[-1].argmax()),
        "argmax_agree": agree,
        "tolerance": tolerance,
        "ok": bool(max_abs <= tolerance and agree),
    }
