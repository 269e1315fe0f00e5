"""Recipes: the YAML presets equal the old Python profiles; recipe files override any setting
and are refused, naming the key, when wrong; the effective recipe prints and loads back."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from frozen_profiles import FROZEN

from fastdraft_dag.config import presets
from fastdraft_dag.config.presets import (
    PROFILES,
    RECIPES,
    ProfileError,
    artifact_recipe,
    load_profile,
    recipe_yaml,
)
from fastdraft_dag.config.schema import ASSET_SETTINGS
from fastdraft_dag.storage.artifacts import ArtifactStore, stable_hash

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_yaml_presets_equal_the_python_profiles_and_keep_every_artifact_version(name):
    assert PROFILES[name] == FROZEN[name]
    for asset in ASSET_SETTINGS:  # equal is not enough: 1 == 1.0, but their hashes differ
        assert stable_hash(PROFILES[name].version_config(asset)) == stable_hash(
            FROZEN[name].version_config(asset)
        ), asset


def test_presets_ship_as_package_data():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = data["package-data"]["fastdraft_dag.config"]
    shipped = {p.name for g in globs for p in (REPO / "fastdraft_dag/config").glob(g)}
    assert shipped == {f"{n}.yaml" for n in PROFILES} == {p.name for p in RECIPES.glob("*.yaml")}


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_recipe_overrides_settings_of_its_base(tmp_path):
    path = write(
        tmp_path,
        "base: tiny\nkd: {n_code: 9, temperatures: {0.0: 1.0}}\n"
        "align: {stage: {steps: 7, lr: 5e-4}}\nbench: {sd_ks: [4]}\n",
    )
    got, tiny = load_profile("default", config_file=path), PROFILES["tiny"]
    assert (got.kd.n_code, got.align.stage.steps, got.bench.sd_ks) == (9, 7, (4,))
    assert got.align.stage.lr == 5e-4  # YAML 1.1 reads 5e-4 as text; a float setting takes it
    assert got.kd.temperatures == {0.0: 1.0}  # a mapping is replaced whole, not merged
    assert got.kd.n_instruction == tiny.kd.n_instruction  # the rest is the base's
    assert got.align.stage.batch_size == tiny.align.stage.batch_size
    assert got.name == "tiny"


def test_a_recipe_without_base_starts_from_the_profile_asked_for(tmp_path):
    path = write(tmp_path, "threads: 3\n")
    assert load_profile("tiny", config_file=path).kd == PROFILES["tiny"].kd
    assert load_profile("default", config_file=path).kd == PROFILES["default"].kd
    assert load_profile("tiny", config_file=path).threads == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "align: {stage: {stpes: 3}}",
            "align.stage.stpes: unknown setting; did you mean 'align.stage.steps'",
        ),
        ("kd: {n_instructions: 3}", "did you mean 'kd.n_instruction'"),
        ("zzz: 1", "zzz: unknown setting (valid keys of the recipe: name, target"),
        ("kd: {n_code: many}", "kd.n_code: 'many' is a str, expected int"),
        ("kd: {keep_truncated: 1}", "kd.keep_truncated: 1 is a int, expected bool"),
        (
            "corpora: {max_docs_per_source: x}",
            "corpora.max_docs_per_source: 'x' is a str, expected int or null",
        ),
        ("bench: {sd_ks: 3}", "bench.sd_ks: 3 is a int, expected list of int"),
        ("bench: {ks: [1, two]}", "bench.ks[1]: 'two' is a str, expected int"),
        ("kd: {temperatures: {hot: 1.0}}", "kd.temperatures key 'hot'"),
        ("kd: {backend: cuda}", "kd.backend 'cuda': expected 'openvino' or 'torch'"),
        ("corpora: {sources: [nope]}", "corpora.sources[0] (SourceSpec): unknown source 'nope'"),
        (
            "corpora: {sources: [{name: x, kind: jsonl, pth: a}]}",
            "corpora.sources[0].pth: unknown setting; did you mean 'corpora.sources[0].path'",
        ),
        ("kd: {prompt_sources: [{kind: jsonl}]}", "a jsonl source needs 'path'"),
        (
            "pretrain: {stages: [{name: s, steps: 1}]}",
            "missing required pretrain.stages[0].batch_size",
        ),
        ("corpora: {dedup: {threshold: 2.0}}", "corpora.dedup (DedupConfig): dedup: threshold 2.0"),
        ("bench: {sd_draft_format: int2}", "bench.sd_draft_format 'int2' is not exported"),
        ("base: huge", "base: profile 'huge': unknown (known: tiny, default, paper, qwen)"),
        ("- a list", "a recipe is a mapping of settings, got list"),
        ("kd: [1]", "kd: [1] is a list, expected KDConfig"),
    ],
)
def test_a_wrong_recipe_is_refused_naming_the_file_key_value_and_what_is_allowed(
    tmp_path, text, expected
):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ProfileError) as err:
        load_profile("tiny", config_file=path)
    assert str(err.value).startswith(f"recipe {str(path)!r}: ")
    assert expected in str(err.value)


def test_an_unreadable_recipe_names_the_file(tmp_path):
    with pytest.raises(ProfileError, match="recipe .*missing.yaml"):
        load_profile("tiny", config_file=tmp_path / "missing.yaml")
    with pytest.raises(ProfileError, match="recipe .*recipe.yaml"):
        load_profile("tiny", config_file=write(tmp_path, "kd: {n_code: [\n"))


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_the_printed_recipe_loads_back_to_the_same_profile(tmp_path, name):
    for base in PROFILES:  # complete: the same whatever base it is laid on
        printed = write(tmp_path, recipe_yaml(PROFILES[name]))
        assert load_profile(base, config_file=printed) == PROFILES[name]


def test_config_show_prints_the_effective_recipe(tmp_path, capsys):
    from fastdraft_dag.cli import main

    path = write(tmp_path, "base: tiny\nalign: {stage: {steps: 11}}\n")
    assert main(["config", "show", "--config", str(path)]) == 0
    printed = write(tmp_path, capsys.readouterr().out, "shown.yaml")
    assert load_profile("paper", config_file=printed) == load_profile("tiny", config_file=path)
    assert yaml.safe_load(printed.read_text())["align"]["stage"]["steps"] == 11


def test_config_show_refuses_a_bad_recipe_with_the_reason(tmp_path, capsys):
    from fastdraft_dag.cli import main

    path = write(tmp_path, "kd: {n_kode: 3}\n")
    assert main(["config", "show", "--config", str(path)]) == 2
    assert "did you mean 'kd.n_code'" in capsys.readouterr().err


def test_a_manifest_keeps_the_recipe_outside_the_version_and_config_show_reads_it(tmp_path, capsys):
    from fastdraft_dag.cli import main

    store, tiny = ArtifactStore(tmp_path), PROFILES["tiny"]
    other = load_profile("tiny", config_file=write(tmp_path, "align: {stage: {steps: 5}}\n"))

    def build(recipe):
        return store.build(
            "tokenized_shards", "p", code_version="1", config=tiny.version_config("tokenized_shards"),
            inputs={}, build=lambda d: (d / "f").write_text("x") and {}, recipe=recipe,
        )  # fmt: skip

    art = build(presets.recipe_data(tiny))
    assert build(presets.recipe_data(other)).manifest["version"] == art.manifest["version"]
    assert json.loads((art.path / "manifest.json").read_text())["recipe"]["kd"]["temperatures"]
    assert artifact_recipe(art.path) == tiny  # JSON made {1.0: 1.0} {"1.0": 1.0}; read back
    assert artifact_recipe(tmp_path / "tokenized_shards" / "p") == tiny  # via LATEST
    assert main(["config", "show", "--artifact", str(art.path)]) == 0
    printed = write(tmp_path, capsys.readouterr().out, "shown.yaml")
    assert load_profile("default", config_file=printed) == tiny


def test_an_artifact_without_a_recipe_says_so(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ProfileError, match="no recipe"):
        artifact_recipe(tmp_path)


def test_config_show_reads_fastdraft_config(tmp_path, capsys, monkeypatch):
    from fastdraft_dag.cli import main

    monkeypatch.setenv("FASTDRAFT_CONFIG", str(write(tmp_path, "base: tiny\nthreads: 5\n")))
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["threads"] == 5


def test_the_readme_recipe_example_loads(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    block = readme.split("# my-recipe.yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # the prompt files it names must exist: a user's own
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "mine.jsonl").write_text("")
    got = load_profile("tiny", config_file=write(tmp_path, block))
    assert (got.name, got.kd.n_instruction, got.bench.sd_ks) == ("default", 600, (2, 4, 6))


@pytest.mark.parametrize("name", ["default", "qwen"])
def test_the_cpu_presets_offer_both_draft_kinds(name, tmp_path):
    """The EAGLE-3 head is opt-in where its training loop is too slow for 2 cores: one line."""
    path = tmp_path / "both.yaml"
    path.write_text(f"base: {name}\ndraft_kinds: [standalone, eagle3]\n")
    both = load_profile(name, config_file=path)
    assert both.draft_kinds == ("standalone", "eagle3")
    assert both.eagle3 == PROFILES[name].eagle3 and both.align == PROFILES[name].align
