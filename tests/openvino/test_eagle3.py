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


def test_mbsu_counts_the_bytes_the_head_reads(head: Path, target: Path, root: Path) -> None:
    """r = the head's per-step bytes (fc, layer, norm, draft LM head; not the embedding rows it
    looks up, nor its index tables) over the target's; MBSU = tau / (1 + k r) per chain."""
    from safetensors import safe_open

    from fastdraft_dag.evaluation.benchmark import BenchmarkJob, head_estimate
    from fastdraft_dag.evaluation.config import BenchConfig
    from fastdraft_dag.evaluation.metrics import params_read_per_token

    with safe_open(head / "model.safetensors", "pt") as f:
        sizes = {k: f.get_slice(k).get_shape() for k in f.keys()}  # noqa: SIM118
    read = sum(
        int(np.prod(s))
        for k, s in sizes.items()
        if not k.endswith(("embed_tokens.weight", "d2t", "t2d"))
    )
    assert params_read_per_token(head) == read
    job = BenchmarkJob(
        target_name="t", target_dir=target, draft_dir=None, irs_dir=root, threads=1,
        bench=BenchConfig(sd_draft_format="int8"), draft_formats=("int8",), target_format="fp16",
        head_dir=head, head_offline={"chains": 10, "tau_k1": 1.5, "tau_k3": 2.0},
    )  # fmt: skip
    est = head_estimate(job)
    r = read * 1.0 / (params_read_per_token(target) * 2.0)
    assert est["r"] == pytest.approx(r)
    assert est["mbsu_k3"] == pytest.approx(2.0 / (1 + 3 * r))
    assert est["mbsu_k1"] == pytest.approx(1.5 / (1 + r)) and est["tau_k3"] == 2.0
