"""EAGLE-3 heads on OpenVINO: export, layer taps and live SD on the tiny (3-layer) target.

The runtime needs three *distinct* target layers, which is why the tiny target has 3 layers;
under 10 layers it picks none itself, so the head's IR carries an explicit hidden_layers_list.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fastdraft_dag.draft.eagle3 import init_head, save_head, tap_record
from fastdraft_dag.openvino.eagle3 import (
    eagle3_pipeline,
    hidden_states_width,
    ir_io_names,
    sd_counts,
    tapped_hidden_states,
)
from fastdraft_dag.openvino.export import export_ir
from fastdraft_dag.openvino.genai import greedy_config, make_pipeline, pipeline_properties

LAYERS = [0, 1, 2]
DRAFT_VOCAB = 256
NEW_TOKENS = 16
# The random 3-layer target repeats a token; these three give three different streams.
PROMPTS = [[1, 19556, 665, 28, 957, 1462, 314], [100, 200, 300], [7, 7, 7, 7]]
PROPS = pipeline_properties("f32", None)


def _generate(pipe, ids: list[int], k: int | None):
    import openvino as ov

    tensor = ov.Tensor(np.asarray([ids], dtype=np.int64))
    return pipe.generate(tensor, greedy_config(pipe, NEW_TOKENS, k))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("eagle3")


@pytest.fixture(scope="module")
def target(tiny_target_dir: Path) -> Path:
    return tiny_target_dir


@pytest.fixture(scope="module")
def target_ir(target: Path, root: Path) -> Path:
    export_ir(target, root / "target3-ir", "fp32")
    return root / "target3-ir"


@pytest.fixture(scope="module")
def plain(target_ir: Path) -> list[list[int]]:
    """Plain greedy decoding of every prompt: the output SD must reproduce exactly."""
    pipe = make_pipeline(target_ir, "CPU", PROPS)
    return [[int(t) for t in _generate(pipe, p, None).tokens[0]] for p in PROMPTS]


@pytest.fixture(scope="module")
def head(target: Path, plain: list[list[int]], root: Path) -> Path:
    """A random head whose zero LM head always drafts draft row 0, mapped by d2t to the first
    token plain decoding emits on prompt 0: accepted there (tests d2t), rejected elsewhere."""
    first = plain[0][0]
    kept = [first] + [i for i in range(DRAFT_VOCAB) if i != first][: DRAFT_VOCAB - 1]
    model = init_head(target, kept, seed=0)
    model.lm_head.weight.data.zero_()
    return save_head(model, root / "head", target, tap_record(LAYERS, 3))


@pytest.fixture(scope="module")
def head_ir(head: Path, root: Path) -> tuple[Path, dict]:
    out = root / "head-ir"
    return out, {**export_ir(head, out, "fp32"), **ir_io_names(out)}


def test_export_round_trip(head_ir: tuple[Path, dict], target: Path) -> None:
    import json

    import openvino as ov

    out, info = head_ir
    hidden = json.loads((target / "config.json").read_text())["hidden_size"]
    assert "hidden_states" in info["inputs"] and "d2t" in info["outputs"], info
    assert hidden_states_width(out) == 3 * hidden
    model = ov.Core().read_model(str(out / "openvino_model.xml"))
    assert model.get_rt_info(["eagle3_mode"]).astype(str) == "True"
    assert model.get_rt_info(["hidden_layers_list"]).astype(str) == "0 1 2"
    assert {"openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= {p.name for p in out.iterdir()}
    assert info["seconds"] > 0 and info["ir_bytes"] > 0


def test_export_int8_is_smaller(head: Path, head_ir: tuple[Path, dict], root: Path) -> None:
    info = {**export_ir(head, root / "head-int8", "int8"), **ir_io_names(root / "head-int8")}
    assert info["ir_bytes"] < head_ir[1]["ir_bytes"] / 2
    assert info["inputs"] == head_ir[1]["inputs"] and info["outputs"] == head_ir[1]["outputs"]


def test_layer_taps_match_training_features(target: Path, target_ir: Path) -> None:
    """Parity: what the runtime taps of the target IR (residual Adds of the head's layers) is
    what the trainer fed the head (`TargetTaps`, hooks on the HF layers), position by position."""
    import torch
    from transformers import AutoModelForCausalLM

    from fastdraft_dag.draft.eagle3 import TargetTaps

    ids = PROMPTS[0]
    model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
    feats, _ = TargetTaps(model, LAYERS)(torch.tensor([ids]), None)
    ir = tapped_hidden_states(target_ir, ids, LAYERS)
    width = model.config.hidden_size
    assert ir.shape == (len(ids), 3 * width)
    np.testing.assert_allclose(ir, feats[0].numpy(), atol=1e-4)
    one_off = tapped_hidden_states(target_ir, ids, [0, 1, 1])[:, -width:]  # HF index convention
    assert not np.allclose(one_off, feats[0, :, -width:].numpy(), atol=1e-2)


@pytest.fixture(scope="module")
def sd_pipe(target_ir: Path, head_ir: tuple[Path, dict]):
    return eagle3_pipeline(target_ir, head_ir[0], "CPU", PROPS)


@pytest.mark.parametrize("k", [2, 3])
def test_sd_equals_plain_greedy(sd_pipe, plain: list[list[int]], k: int) -> None:
    for i, (ids, expected) in enumerate(zip(PROMPTS, plain, strict=True)):
        result = _generate(sd_pipe, ids, k)
        assert [int(t) for t in result.tokens[0]] == expected, (k, i)
        counts = sd_counts(result)
        assert counts["passes"] is not None and counts["drafted"] > 0, counts
        if i == 0:  # the head drafts exactly what plain emits: accepted, fewer target passes
            assert counts["accepted"] >= NEW_TOKENS // 2 and counts["metric_accepted"] > 0, counts
        elif plain[0][0] not in expected:
            assert counts["accepted"] == 0, counts


def _with_layers(head_ir: Path, out: Path, value: str | None) -> Path:
    """A copy of the head IR whose rt_info hidden_layers_list is ``value`` (None: removed)."""
    shutil.copytree(head_ir, out)
    xml = out / "openvino_model.xml"
    lines = xml.read_text().splitlines(keepends=True)
    tag = '<hidden_layers_list value="0 1 2" />'
    if value is None:
        lines = [line for line in lines if tag not in line]
    xml.write_text(
        "".join(line.replace(tag, f'<hidden_layers_list value="{value}" />') for line in lines)
    )
    return out


@pytest.mark.parametrize(
    ("value", "error"),
    [(None, "at least 10"), ("0 1 1", "does not match"), ("0 1 3", "does not match")],
)
def test_runtime_refuses_illegal_taps(
    head_ir: tuple[Path, dict], target_ir: Path, tmp_path: Path, value: str | None, error: str
) -> None:
    """Pins the runtime's rules: automatic taps need >= 10 layers, ids are distinct and < N."""
    head = _with_layers(head_ir[0], tmp_path / "head", value)
    with pytest.raises(RuntimeError, match=error):
        eagle3_pipeline(target_ir, head, "CPU", PROPS)


def test_draft_refuses_non_eagle3_ir(target_ir: Path) -> None:
    with pytest.raises(ValueError, match="eagle3_mode"):
        eagle3_pipeline(target_ir, target_ir, "CPU", PROPS)
