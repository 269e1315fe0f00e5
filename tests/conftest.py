"""Shared fixtures: the real embedded target (converted once per machine) and a tiny plumbing target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("FASTDRAFT_TEST_CACHE", REPO / "artifacts" / "test-cache"))

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def target_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct as a safetensors directory (44 s the first time)."""
    from fastdraft_dag.targets.resolve import EMBEDDED_NAME, resolve_target

    return resolve_target(EMBEDDED_NAME, CACHE / "targets").path


@pytest.fixture(scope="session")
def tokenizer(target_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(target_dir)


@pytest.fixture(scope="session")
def tiny_target_dir(target_dir: Path) -> Path:
    """A random 3-layer Llama with the real SmolLM2 tokenizer: fast plumbing, not a real target."""
    from fastdraft_dag.targets.resolve import TINY_NAME, resolve_target

    return resolve_target(TINY_NAME, CACHE / "targets").path
