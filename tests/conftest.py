"""Shared fixtures: the real embedded target (converted once per machine) and a tiny plumbing target."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("FASTDRAFT_TEST_CACHE", REPO / "artifacts" / "test-cache"))

os.environ.setdefault("OMP_NUM_THREADS", "2")

# What a test file costs, so `pytest -m unit` is the quick loop; every other file is `unit`.
COST = {
    "assets/test_graph_tiny.py": "graph",
    "test_faults_cli.py": "faults",
    "test_bad_input_cli.py": "faults",
    "assets/test_ui.py": "browser",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its file's cost; a COST entry naming no file is an error, so a
    renamed end-to-end test cannot fall silently into the quick set."""
    tests = Path(__file__).parent
    missing = [name for name in COST if not (tests / name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py COST names missing files: {missing}")
    for item in items:
        rel = Path(item.fspath).resolve().relative_to(tests.resolve()).as_posix()
        item.add_marker(getattr(pytest.mark, COST.get(rel, "unit")))


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
