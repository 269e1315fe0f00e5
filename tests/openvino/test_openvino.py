"""OpenVINO export and IR-vs-PyTorch logits on tiny random models (live SD: test_sd_benchmark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastdraft_dag.openvino.export import check_ir_logits, export_ir

IDS = [1, 19556, 665, 28, 957, 1462, 314]


@pytest.fixture(scope="module")
def irs(tiny_target_dir: Path, target_dir: Path, tmp_path_factory) -> dict:
    """Tiny target as fp32 and fp16 IR, a second tiny model (the draft) as int8 IR."""
    from fastdraft_dag.targets.tiny import build_tiny_target

    root = tmp_path_factory.mktemp("ir")
    draft_dir = build_tiny_target(target_dir, root / "draft-hf", seed=1)
    return {
        "draft_dir": draft_dir,
        "fp32": (root / "t32", export_ir(tiny_target_dir, root / "t32", "fp32")),
        "fp16": (root / "t16", export_ir(tiny_target_dir, root / "t16", "fp16")),
        "int8": (root / "d8", export_ir(draft_dir, root / "d8", "int8")),
    }


def test_export_writes_genai_loadable_dirs(irs: dict) -> None:
    import openvino_genai as ov_genai

    sizes = {fmt: irs[fmt][1]["ir_bytes"] for fmt in ("fp32", "fp16", "int8")}
    assert sizes["fp32"] > sizes["fp16"] > sizes["int8"]
    for fmt in ("fp16", "int8"):
        out, info = irs[fmt]
        assert info["weight_format"] == fmt and info["seconds"] > 0
        assert {"openvino_tokenizer.xml", "openvino_detokenizer.xml"} <= set(info["files"])
        pipe = ov_genai.LLMPipeline(str(out), "CPU", INFERENCE_PRECISION_HINT="f32")
        config = pipe.get_generation_config()
        config.max_new_tokens = 5
        config.apply_chat_template = False
        assert isinstance(pipe.generate("Hello there", config), str)


def test_export_rejects_unknown_format(tiny_target_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weight_format"):
        export_ir(tiny_target_dir, tmp_path / "x", "fp8")


@pytest.mark.parametrize(("fmt", "tol"), [("fp32", 1e-3), ("fp16", 5e-2)])
def test_ir_logits_match_torch(irs: dict, tiny_target_dir: Path, fmt: str, tol: float) -> None:
    check = check_ir_logits(tiny_target_dir, irs[fmt][0], IDS, tol)
    assert check["ok"], check
