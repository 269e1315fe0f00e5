"""docs/settings.md documents every recipe setting and is as the code generates it."""

from __future__ import annotations

import dataclasses
import json
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


SCHEMA_DOC = DOC.with_name("recipe.schema.json")


def test_the_committed_recipe_schema_is_up_to_date():
    from fastdraft_dag.config import json_schema

    assert SCHEMA_DOC.read_text() == json_schema.render(), (
        f"docs/recipe.schema.json is stale: run `{json_schema.REGENERATE}`"
    )


def _schema_errors(recipe: dict) -> list[str]:
    import jsonschema

    from fastdraft_dag.config.json_schema import recipe_schema

    validator = jsonschema.Draft202012Validator(recipe_schema())
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(recipe)]


def test_every_preset_and_a_partial_recipe_satisfy_the_schema():
    import yaml

    from fastdraft_dag.config.presets import PRESET_NAMES, RECIPES

    for name in PRESET_NAMES:
        # the YAML presets write float mapping keys (temperatures); JSON keys are strings
        data = json.loads(json.dumps(yaml.safe_load((RECIPES / f"{name}.yaml").read_text())))
        assert _schema_errors(data) == [], name
    partial = {
        "base": "qwen",
        "align": {"stage": {"lr": 0.001}},
        "corpora": {"sources": ["wikipedia"]},
    }
    assert _schema_errors(partial) == []


def test_the_schema_flags_what_the_loader_refuses():
    errors = _schema_errors({"base": "huge", "align": {"stage": {"stpes": 3}}, "threads": "two"})
    joined = " | ".join(errors)
    assert "'huge' is not one of" in joined
    assert "align.stage: Additional properties are not allowed ('stpes'" in joined
    assert "threads: 'two' is not of type 'integer'" in joined
    # a list item is written whole: it keeps its required keys
    (missing,) = _schema_errors({"pretrain": {"stages": [{"name": "s", "steps": 3, "lr": 0.1}]}})
    assert missing == "pretrain.stages.0: 'batch_size' is a required property"
