"""The whole graph on the `tiny` profile: real Dagster runs, real training, real OpenVINO.

The tiny target is a random 2-layer model sharing SmolLM2's tokenizer, so every number here is
plumbing, not quality; what is asserted is that each step ran for real and reported truthfully.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dagster as dg
import pytest
from conftest import CACHE

from fastdraft_dag import profiles
from fastdraft_dag.cli import ORDER
from fastdraft_dag.definitions import build_defs
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.storage.tables import query

pytestmark = pytest.mark.slow

ASSETS = list(ORDER)


def _root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    (root / "targets").symlink_to(CACHE / "targets", target_is_directory=True)
    return root


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, selection: str = "*"):
    observed = defs.resolve_job_def("observe_targets").execute_in_process(instance=instance)
    assert observed.success
    return dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=selection,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, target_dir):
    root = _root(tmp_path_factory)
    defs = build_defs("tiny", str(root))
    instance = dg.DagsterInstance.ephemeral()
    result = _run(defs, instance)
    return root, defs, instance, result


def _metadata(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    assert mats, f"{asset} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}


def test_every_asset_materializes_with_a_manifest(tiny):
    root, _, _, result = tiny
    assert result.success
    store = ArtifactStore(root)
    for asset in ASSETS:
        part = "shared" if asset == "filtered_corpora" else "tiny-random"
        art = store.latest(asset, part)
        assert art.manifest["asset"] == asset
        assert art.manifest["files"], f"{asset} wrote no files"
        assert _metadata(result, asset)["artifact_version"] == art.manifest["version"]


def test_metadata_reports_real_figures(tiny):
    _, _, _, result = tiny
    corpora = _metadata(result, "filtered_corpora")
    assert corpora["docs_kept"] > 0 and corpora["bytes_kept"] > 0
    assert corpora["funnel_plot"].startswith("![funnel](data:image/png;base64,iVBOR")
    assert "| source |" in corpora["per_source"]
    shards = _metadata(result, "tokenized_shards")
    assert shards["train_tokens"] > 0
    draft = _metadata(result, "pretrained_draft")
    assert draft["parameters"] > 0 and draft["tokens_per_s"] > 0 and draft["val_loss"] > 0
    kd = _metadata(result, "synthetic_kd_dataset")
    assert kd["rows"] > 0
    assert "| task |" in _metadata(result, "benchmark_tables")["summary"]


def test_tokenizer_checks_pass(tiny):
    _, _, _, result = tiny
    evals = result.get_asset_check_evaluations()
    by_name = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evals}
    for asset in ("tokenized_shards", "pretrained_draft", "aligned_draft"):
        assert by_name[(asset, "tokenizer_matches_target")] is True
    assert by_name[("tokenized_shards", "shard_checksums")] is True


def test_draft_shares_target_vocabulary_and_loads(tiny):
    from transformers import AutoConfig, AutoModelForCausalLM

    root, _, _, _ = tiny
    draft = ArtifactStore(root).latest("aligned_draft", "tiny-random").path
    target = next((ArtifactStore(root).root / "targets" / "embedded").glob("tiny-random-*"))
    assert (
        AutoConfig.from_pretrained(draft).vocab_size
        == AutoConfig.from_pretrained(target).vocab_size
    )
    assert AutoModelForCausalLM.from_pretrained(draft).num_parameters() > 0
    assert (draft / "README.md").read_text().count("FastDraft") >= 1


def test_benchmark_covers_four_families_and_sd_equals_plain(tiny):
    root, _, _, _ = tiny
    art = ArtifactStore(root).latest("benchmark_tables", "tiny-random")
    tables = json.loads((art.path / "results.json").read_text())
    families = {r["task"] for r in tables["offline"]}
    assert families == {"code", "instructions", "summarization", "text_completion", "all"}
    assert {r["k"] for r in tables["offline"]} == set(range(1, 9))
    for row in tables["offline"]:
        assert 0.0 <= row["alpha_greedy"] <= 1.0
        assert 1.0 <= row["tau_sim"] <= row["k"] + 1
    # Tiny models under the f32 hint: speculative output is token-for-token the plain output.
    assert tables["wallclock"], "no wall-clock rows"
    for row in tables["wallclock"]:
        assert row["agreement"] == 1.0, row
        assert row["first_divergence"] is None, row
        assert row["plain_tok_s"] > 0 and row["sd_tok_s"] > 0 and row["tau_measured"] >= 1.0


def test_results_land_in_duckdb_with_run_id(tiny):
    root, _, _, result = tiny
    rows = query(root / "fastdraft.duckdb", "SELECT DISTINCT run_id FROM benchmark_offline")
    assert [r["run_id"] for r in rows] == [result.run_id]
    assert query(root / "fastdraft.duckdb", "SELECT count(*) AS n FROM corpus_stats")[0]["n"] > 0
    kept = query(
        root / "fastdraft.duckdb",
        "SELECT sum(docs) AS n FROM corpus_funnel WHERE stage = 'kept' AND run_id = ?",
        [result.run_id],
    )[0]["n"]
    assert kept == _metadata(result, "filtered_corpora")["docs_kept"]


def test_rerun_recomputes_nothing(tiny):
    root, defs, instance, _ = tiny
    before = query(root / "fastdraft.duckdb", "SELECT count(*) AS n FROM benchmark_offline")
    again = _run(defs, instance)
    assert again.success
    for asset in ASSETS:
        assert _metadata(again, asset)["reused"] is True, asset
    after = query(root / "fastdraft.duckdb", "SELECT count(*) AS n FROM benchmark_offline")
    assert after == before


def test_invalid_draft_config_fails_before_training(tiny, monkeypatch):
    root, _, instance, _ = tiny
    bad_draft = dataclasses.replace(profiles.TINY.pretrain.draft, hidden_size=66)
    bad = dataclasses.replace(
        profiles.TINY,
        name="bad",
        pretrain=dataclasses.replace(profiles.TINY.pretrain, draft=bad_draft),
    )
    monkeypatch.setitem(profiles.PROFILES, "bad", bad)
    defs = build_defs("bad", str(root))
    result = _run(defs, instance, selection="pretrained_draft")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data.error)
    assert "hidden_size" in message
    partial = list((root / "pretrained_draft" / "tiny-random").glob(".*"))
    assert partial == [], "a failed config left a partial artifact"


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_definitions_load_for_every_profile(name, tmp_path):
    defs = build_defs(name, str(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert set(ASSETS) | {"target_model"} <= keys
    defs.resolve_implicit_global_asset_job_def()


def test_tokenizer_mismatch_blocks_downstream_naming_both(tiny):
    root, defs, instance, _ = tiny
    draft = ArtifactStore(root).latest("aligned_draft", "tiny-random").path
    template = draft / "chat_template.jinja"
    original = template.read_text()
    template.write_text("{{ messages[0]['content'] }}")
    try:
        result = _run(defs, instance, selection="aligned_draft*")
    finally:
        template.write_text(original)
    check = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "aligned_draft"
    )
    assert check.passed is False
    assert str(draft) in check.description and "target" in check.description
    assert "chat template" in json.dumps(check.metadata["differences"].value)
    assert not result.asset_materializations_for_node("openvino_ir"), "a blocking check let it run"


def test_cli_report_prints_build_times_and_tables(tiny, capsys):
    from fastdraft_dag.cli import main

    root, _, _, _ = tiny
    assert main(["report", "--profile", "tiny", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for asset in ASSETS:
        assert f"| {asset} |" in out
    assert "Wall-clock speculative decoding" in out and "| all | 3 |" in out


def test_target_observation_records_its_revision(tiny):
    from fastdraft_dag.target import TINY_NAME, resolve_target

    root, _, instance, _ = tiny
    records = instance.fetch_observations(dg.AssetKey("target_model"), limit=1).records
    assert records, "target_model was never observed"
    revision = resolve_target(TINY_NAME, root / "targets").revision
    assert records[0].asset_observation.data_version == revision
