"""The pipeline resource takes a recipe file (Launchpad `config_file`, FASTDRAFT_CONFIG) and
refuses a bad one before anything runs."""

from __future__ import annotations

import dagster as dg
import pytest

from fastdraft_dag.config.presets import PROFILES, ProfileError, recipe_data
from fastdraft_dag.definitions import build_defs
from fastdraft_dag.resources.pipeline import FastDraftPipeline


def test_config_file_overrides_the_profile_and_the_manifest_recipe_follows(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: tiny\nkd: {n_code: 3}\n")
    pipeline = FastDraftPipeline(config_file=str(recipe), artifact_root=str(tmp_path))
    assert pipeline.profile.kd.n_code == 3 and pipeline.profile.name == "tiny"
    assert pipeline.recipe == recipe_data(pipeline.profile)
    assert FastDraftPipeline(profile_name="tiny").profile == PROFILES["tiny"]


def test_the_launchpad_shows_config_file_with_a_description():
    fields = FastDraftPipeline.to_config_schema().as_field().config_type.fields
    assert "recipe YAML" in fields["config_file"].description


def test_a_bad_recipe_fails_when_the_run_starts(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kd: {n_kode: 3}\n")
    pipeline = FastDraftPipeline(config_file=str(recipe))
    with pytest.raises(ProfileError, match="did you mean 'kd.n_code'"):
        pipeline.setup_for_execution(dg.build_init_resource_context())


def test_build_defs_validates_the_recipe_before_serving(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("threads: 1\nbench: {sd_ks: []}\n")
    with pytest.raises(ProfileError, match="bench.sd_ks"):
        build_defs("tiny", str(tmp_path), config_file=str(recipe))
    recipe.write_text("threads: 1\n")
    defs = build_defs("tiny", str(tmp_path), config_file=str(recipe))
    assert defs.resources["pipeline"].profile.threads == 1
