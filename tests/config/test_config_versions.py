"""An artifact's version hashes exactly the settings its asset reads (config/schema.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastdraft_dag.config.presets import load_profile
from fastdraft_dag.config.schema import ASSET_SETTINGS

# Written out by hand from what each asset's code reads, independently of ASSET_SETTINGS.
READERS: dict[str, set[str]] = {
    "corpora": {"filtered_corpora"},
    "shards": {"tokenized_shards"},
    "pretrain": {"pretrained_draft"},
    "pretrain.seed": {"pretrained_draft", "aligned_draft"},
    "pretrain.dtype": {"pretrained_draft", "aligned_draft"},
    "pretrain.freeze": {"pretrained_draft", "aligned_draft"},
    "kd": {"synthetic_kd_dataset"},
    "kd.max_new_tokens": {"synthetic_kd_dataset", "aligned_draft"},
    "kd.batch_size": {"synthetic_kd_dataset", "aligned_draft"},
    "align": {"aligned_draft"},
    "align.gate_min_gain": set(),  # judges the artifact, does not build it
    "export": {"openvino_ir", "benchmark_tables"},
    "bench": {"benchmark_tables"},
    "bench.prompt_files": {"synthetic_kd_dataset", "benchmark_tables"},
    "bench.reference_draft": {"openvino_ir", "benchmark_tables"},
    "bench.sd_draft_format": {"openvino_ir", "benchmark_tables"},
    "draft_kinds": {"openvino_ir", "benchmark_tables"},
    "eagle3": {"eagle3_head"},
    "eagle3.gate_min_tau": set(),  # judges the head, does not build it
    "threads": {
        "filtered_corpora", "pretrained_draft", "synthetic_kd_dataset", "aligned_draft",
        "eagle3_head", "benchmark_tables",
    },
}  # fmt: skip


def expected_readers(path: str) -> set[str]:
    """The most specific entry of READERS that covers `path`."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in READERS:
            return READERS[".".join(parts[:n])]
    raise KeyError(path)


def leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += leaves(value, path + ".")
        else:
            out.append((path, value))
    return out


def perturbed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, value[-1]) if value else ("x",)
    if isinstance(value, dict):
        return {**value, "extra": 1}
    if value is None:
        return 7
    raise TypeError(type(value))


def _raw_replace(obj: Any, name: str, value: Any) -> Any:
    """Replace without __post_init__ validation: a perturbed value need not be valid."""
    new = object.__new__(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(new, f.name, value if f.name == name else getattr(obj, f.name))
    return new


SKIP = {"name", "target", "target_revision"}  # the target is an input (target_model), not a setting


@pytest.mark.parametrize("profile_name", ["tiny", "default"])
def test_each_setting_changes_exactly_the_versions_of_its_readers(profile_name: str) -> None:
    profile = load_profile(profile_name)
    base = {asset: profile.version_config(asset) for asset in ASSET_SETTINGS}
    wrong = []
    for path, value in leaves(profile):
        if path.split(".")[0] in SKIP:
            continue
        changed_profile = _set(profile, path, perturbed(value))
        changed = {a for a in ASSET_SETTINGS if changed_profile.version_config(a) != base[a]}
        if changed != expected_readers(path):
            wrong.append(
                f"{path}: changes {sorted(changed)}, read by {sorted(expected_readers(path))}"
            )
    assert not wrong, "\n".join(wrong)


def _set(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    inner = _set(getattr(obj, head), rest, value) if rest else value
    return _raw_replace(obj, head, inner)


def test_an_asset_cannot_read_an_undeclared_setting() -> None:
    settings = load_profile("default").settings("aligned_draft")
    assert settings.kd.max_new_tokens == load_profile("default").kd.max_new_tokens
    with pytest.raises(AttributeError, match="kd.seed"):
        _ = settings.kd.seed
    with pytest.raises(AttributeError, match="bench"):
        _ = settings.bench
