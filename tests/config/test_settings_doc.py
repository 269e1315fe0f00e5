"""docs/settings.md documents every recipe setting and is as the code generates it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fastdraft_dag.config.presets import PROFILES
from fastdraft_dag.config.reference import REGENERATE, field_docs, render, setting_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_the_committed_reference_is_up_to_date():
    assert DOC.read_text() == render(), f"docs/settings.md is stale: run `{REGENERATE}`"


def test_every_setting_has_a_row_with_a_description():
    rows, items = setting_rows()
    described = {r[0].strip("`"): r[-1] for r in rows}

    def leaves(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value) and not hasattr(type(value), "parse"):
                yield from leaves(value, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    assert set(described) == set(leaves(PROFILES["default"]))
    assert not [p for p, d in described.items() if not d], "settings without a comment"
    for _, cls in items:  # list items (sources, stages, prompt sources): each key documented
        assert all(field_docs(cls).values()), cls.__name__


def test_field_docs_read_comments_above_and_beside_a_field():
    from fastdraft_dag.distill.config import AlignConfig

    docs = field_docs(AlignConfig)
    assert docs["gate_min_gain"].startswith("The gate (aligned_beats_pretrained) passes when")
    assert docs["max_len"] == "longest KD row (prompt + answer, tokens) trained on"
