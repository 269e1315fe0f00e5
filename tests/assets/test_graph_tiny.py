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

from fastdraft_dag.assets.registration import ensure_default_target
from fastdraft_dag.cli import ORDER
from fastdraft_dag.config import presets as profiles
from fastdraft_dag.config.presets import PROFILES
from fastdraft_dag.definitions import build_defs
from fastdraft_dag.draft.eagle3 import is_eagle3_dir, load_head
from fastdraft_dag.evaluation.adhoc import locate_draft
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.storage.tables import query

pytestmark = pytest.mark.slow

ASSETS = list(ORDER)


def _root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    (root / "targets").symlink_to(CACHE / "targets", target_is_directory=True)
    return root


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, selection: str = "*"):
    """Register the profile's target as a partition (as the CLI and the sensor do), observe it,
    then materialize the selection for that partition."""
    key = ensure_default_target(instance, defs.resources["pipeline"])
    observed = defs.resolve_job_def("observe_targets").execute_in_process(
        instance=instance, partition_key=key
    )
    assert observed.success
    return dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=selection,
        partition_key=key,
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
    # every asset's drops under the one key, reason -> count, phases prefixed
    assert all(r.split(":")[0] in ("read", "rule", "dedup") for r in corpora["drops"])
    assert "funnel" in corpora and isinstance(corpora["drops"], dict)
    assert all(r.split(":")[0] in ("prompt", "generation") for r in kd["drops"])
    assert "prompt_drops" not in kd and "drops" in _metadata(result, "aligned_draft")
    head = _metadata(result, "eagle3_head")
    assert head["layers"] == [0, 1, 2] and head["trainable_parameters"] > 0
    assert head["val_loss"] > 0 and "| task |" in head["offline_estimate"]
    assert head["offline_tau_k3"] >= 1.0
    assert "| task |" in _metadata(result, "benchmark_tables")["summary"]


def test_tokenizer_checks_pass(tiny):
    _, _, _, result = tiny
    evals = result.get_asset_check_evaluations()
    by_name = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in evals}
    for asset in ("tokenized_shards", "pretrained_draft", "aligned_draft", "eagle3_head"):
        assert by_name[(asset, "tokenizer_matches_target")] is True
    assert ("eagle3_head", "eagle3_head_accepts") in by_name
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
    assert {r["precision"] for r in tables["offline"]} == {"torch-fp32", "fp16", "int8", "int4"}
    for row in tables["offline"]:
        assert 0.0 <= row["alpha_greedy"] <= 1.0
        assert 1.0 <= row["tau_sim"] <= row["k"] + 1
    # Tiny models under the f32 hint: speculative output is token-for-token the plain output.
    wall = tables["wallclock"]
    assert {r["mode"] for r in wall} == {"plain", "sd", "eagle3", "prompt_lookup"}
    assert {r["k"] for r in wall if r["mode"] == "eagle3"} == {2, 3}  # the EAGLE-3 head
    assert {r["k"] for r in wall if r["mode"] == "sd"} == {2, 3, None}  # None: threshold
    assert {r["confidence_threshold"] for r in wall if r["mode"] == "sd"} == {None, 0.3}
    assert {r["k"] for r in wall if r["mode"] == "prompt_lookup"} == {2, 3}  # its own best k
    for row in wall:
        assert row["agreement"] == 1.0, row
        assert row["first_divergence"] is None, row
        assert row["tok_s"] > 0 and row["speedup"] > 0
        assert row["speedup_ci_low"] <= row["speedup"] <= row["speedup_ci_high"], row
        assert row["mode"] == "plain" or row["tau_measured"] >= 1.0, row


def test_benchmark_release_plots_and_quantization_check(tiny):
    root, _, _, result = tiny
    art = ArtifactStore(root).latest("benchmark_tables", "tiny-random")
    meta = _metadata(result, "benchmark_tables")
    tables = json.loads((art.path / "results.json").read_text())
    best_k, chosen = tables["best_k"], tables["choice"]["chosen"]
    assert meta["best_k"] == best_k and best_k in (2, 3) and meta["device"] == "CPU"
    assert meta["release_mode"] == chosen["label"]
    pooled = [
        r for r in tables["wallclock"] if r["task"] == "all" and r["mode"] != "reference_draft"
    ]
    assert chosen["tok_s"] == max(r["tok_s"] for r in pooled), "the fastest mode, plain included"
    release = json.loads((art.path / "release/release.json").read_text())
    assert release["chosen"] == chosen
    generation_file = art.path / "release/draft-ir/generation_config.json"
    generation = json.loads(generation_file.read_text()) if generation_file.is_file() else {}
    assert (art.path / "release/draft-ir/openvino_model.xml").is_file()
    card = (art.path / "release/README.md").read_text()
    assert "| prompt_lookup |" in card and "| speedup_95ci |" in card
    if chosen["mode"] in ("sd", "eagle3") and chosen["k"] is not None:
        assert generation["num_assistant_tokens"] == chosen["k"]
        assert f"config.num_assistant_tokens = {chosen['k']}" in card
    elif chosen["mode"] == "sd":
        assert generation["assistant_confidence_threshold"] == chosen["confidence_threshold"]
    else:  # prompt lookup or plain: the draft is not recommended, no SD settings shipped
        assert "num_assistant_tokens" not in generation
        assert "assistant_confidence_threshold" not in generation
        assert ("prompt lookup decoding" in card) is (chosen["mode"] == "prompt_lookup")
        assert ("No mode beat plain decoding" in card) is (chosen["mode"] == "plain")
    pays = next(
        e for e in result.get_asset_check_evaluations() if e.check_name == "draft_pays_for_itself"
    )
    assert pays.severity == dg.AssetCheckSeverity.WARN
    assert pays.passed is tables["choice"]["sd_pays"]
    assert pays.metadata["chosen_mode"].value == chosen["label"]
    assert "![speedup vs k](speedup_vs_k.png)" in card
    assert (art.path / "release/speedup_vs_k.png").is_file()
    for key in ("acceptance_by_draft_position", "speedup_vs_k"):
        assert meta[key].startswith("![") and "data:image/png;base64,iVBOR" in meta[key]
    check = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "quantized_draft_acceptance"
    )
    assert check.severity == dg.AssetCheckSeverity.WARN
    losses = check.metadata["losses"].value
    assert {x["precision"] for x in losses} == {"int8", "int4"}
    assert check.passed is all(x["loss"] <= 0.02 for x in losses)
    modes = query(
        root / "fastdraft.duckdb",
        "SELECT DISTINCT mode FROM benchmark_wallclock WHERE run_id = ? ORDER BY mode",
        [result.run_id],
    )
    assert [r["mode"] for r in modes] == ["eagle3", "plain", "prompt_lookup", "sd"]


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
        pretrain=dataclasses.replace(profiles.TINY.pretrain, draft=bad_draft, init="random"),
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
    too_deep = dataclasses.replace(profiles.TINY.pretrain, layers=5)  # the tiny target has 3
    monkeypatch.setitem(
        profiles.PROFILES,
        "deep",
        dataclasses.replace(profiles.TINY, name="deep", pretrain=too_deep),
    )
    result = _run(build_defs("deep", str(root)), instance, selection="pretrained_draft")
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "draft.layers: 5, expected 1..3" in str(failure.event_specific_data.error)


def test_eagle3_head_is_not_built_without_the_eagle3_kind(tmp_path_factory, monkeypatch):
    """The default recipe builds the standalone draft only; the head asset then trains nothing."""
    solo = dataclasses.replace(profiles.TINY, name="solo", draft_kinds=("standalone",))
    monkeypatch.setitem(profiles.PROFILES, "solo", solo)
    root = _root(tmp_path_factory)
    result = _run(build_defs("solo", str(root)), dg.DagsterInstance.ephemeral(), "eagle3_head")
    assert result.success
    (mat,) = result.asset_materializations_for_node("eagle3_head")
    assert mat.metadata["built"].value is False
    assert "has no eagle3" in mat.metadata["reason"].value
    assert not (root / "eagle3_head").exists()


@pytest.mark.parametrize("name", list(PROFILES))
def test_definitions_load_for_every_profile(name, tmp_path):
    defs = build_defs(name, str(tmp_path))
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert set(ASSETS) | {"target_model"} <= keys
    defs.resolve_implicit_global_asset_job_def()


def test_tokenizer_mismatch_blocks_downstream_naming_both(tiny):
    root, defs, instance, _ = tiny
    from fastdraft_dag.core.files import sha256_file

    draft = ArtifactStore(root).latest("aligned_draft", "tiny-random").path
    names = ("chat_template.jinja", "tokenizer.json", "manifest.json")
    originals = {n: (draft / n).read_text() for n in names}
    # A draft *built* with another chat template and another special token: its manifest agrees
    # with its files (a merely tampered file would be caught on reuse and rebuilt), but not with
    # the target. The template alone would be a warning (prompts are rendered with the
    # target's); the token is what decoding reads, and blocks.
    (draft / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    tok = json.loads(originals["tokenizer.json"])
    tok["added_tokens"][0]["content"] = "<|not-the-targets|>"
    (draft / "tokenizer.json").write_text(json.dumps(tok))
    manifest = json.loads(originals["manifest.json"])
    for name in names[:2]:
        manifest["files"][name] = sha256_file(draft / name)
        manifest.get("sizes", {})[name] = (draft / name).stat().st_size
    (draft / "manifest.json").write_text(json.dumps(manifest))
    try:
        result = _run(defs, instance, selection="aligned_draft*")
    finally:
        for name, text in originals.items():
            (draft / name).write_text(text)
    check = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "aligned_draft"
    )
    assert check.passed is False
    assert str(draft) in check.description and "target" in check.description
    assert "added tokens" in json.dumps(check.metadata["differences"].value)
    assert "chat template" in json.dumps(check.metadata["warnings"].value)
    assert "chat template" not in json.dumps(check.metadata["differences"].value)
    assert not result.asset_materializations_for_node("openvino_ir"), "a blocking check let it run"


def test_cli_report_prints_build_times_and_tables(tiny, capsys):
    from fastdraft_dag.cli import main

    root, _, _, _ = tiny
    assert main(["report", "--profile", "tiny", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    for asset in ASSETS:
        assert f"| {asset} |" in out
    assert "Wall-clock speculative decoding" in out and "| sd | draft-fp16 | 3 |  | all |" in out


def test_history_in_metadata_and_report(tiny, capsys):
    from fastdraft_dag.cli import main

    root, _, _, result = tiny
    meta = _metadata(result, "benchmark_tables")
    assert "data:image/png;base64,iVBOR" in meta["history_plot"]
    version = ArtifactStore(root).latest("benchmark_tables", "tiny-random").manifest["version"]
    assert version in meta["history"] and "| alpha_greedy |" in meta["history"]
    assert main(["report", "--history", "--profile", "tiny", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Benchmark history: embedded:tiny-random" in out and version in out


def test_target_observation_records_its_revision(tiny):
    from fastdraft_dag.targets.resolve import TINY_NAME, resolve_target

    root, _, instance, _ = tiny
    records = instance.fetch_observations(dg.AssetKey("target_model"), limit=1).records
    assert records, "target_model was never observed"
    revision = resolve_target(TINY_NAME, root / "targets").revision
    assert records[0].asset_observation.data_version == revision


def test_kd_quality_checks_fail_on_empty_and_warn_on_truncated(tiny):
    _, _, _, result = tiny
    checks = {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() == "synthetic_kd_dataset"
    }
    empty, truncated = checks["kd_no_empty_responses"], checks["kd_truncated_responses"]
    assert empty.passed is True and empty.metadata["empty"].value == 0
    n = truncated.metadata["truncated"].value
    assert truncated.metadata["drops"].value == empty.metadata["drops"].value
    # The tiny target samples long answers: kept on purpose, so a warning, not a failure.
    assert truncated.passed is (n == 0) and truncated.severity == dg.AssetCheckSeverity.WARN
    assert result.asset_materializations_for_node("aligned_draft"), "a warning must not block"


def test_acceptance_check_blocks_a_regression_against_the_previous_run(tiny):
    """First benchmark: nothing to compare, passes. A previous run of the same target that
    accepted far more makes the (reused) benchmark's blocking check fail, naming the task."""
    import datetime

    from fastdraft_dag.storage.tables import connect

    root, defs, instance, result = tiny
    first = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "acceptance_not_regressed"
    )
    assert first.passed is True
    art = ArtifactStore(root).latest("benchmark_tables", "tiny-random")
    alphas = {
        r["task"]: r["alpha_greedy"]
        for r in json.loads((art.path / "results.json").read_text())["offline"]
        if r["precision"] == "torch-fp32"
    }
    task = min(alphas, key=alphas.get)  # a previous run that accepted far more on this task
    assert alphas[task] < 0.9, alphas
    db = root / "fastdraft.duckdb"
    con = connect(db)
    try:
        con.execute(
            "INSERT INTO benchmark_offline (run_id, created_at, artifact_version, target, task, k, "
            "alpha_greedy) VALUES ('fake', ?, 'older-benchmark', 'embedded:tiny-random', ?, 1, 1.0)",
            [datetime.datetime.now() - datetime.timedelta(days=1), task],
        )
    finally:
        con.close()
    try:
        again = _run(defs, instance, selection="benchmark_tables")
    finally:
        con = connect(db)
        con.execute("DELETE FROM benchmark_offline WHERE run_id = 'fake'")
        con.close()
    check = next(
        e for e in again.get_asset_check_evaluations() if e.check_name == "acceptance_not_regressed"
    )
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert task in check.description and "older-benchmark" in check.description
    assert not again.success, "a blocking check failure fails the step"


def test_cli_stale_only_runs_nothing_when_everything_is_fresh(tiny, monkeypatch, capsys):
    from fastdraft_dag import cli

    root, _, instance, _ = tiny
    monkeypatch.setattr(cli, "_instance", lambda: instance)
    before = len(instance.get_run_records())
    assert cli.main(["run", "--profile", "tiny", "--root", str(root), "--stale-only"]) == 0
    out = capsys.readouterr().out
    assert "stale or missing for tiny-random: none" in out
    # Only the observation ran: no materialization run was launched.
    assert len(instance.get_run_records()) == before + 1


def test_killed_training_resumes_on_rematerialization(tiny, monkeypatch):
    """kill -9 the trainer mid-run: its checkpoints stay in the artifact's partial directory, and
    materializing the same asset again resumes from them instead of starting over."""
    import threading
    import time

    import psutil

    root, _, instance, _ = tiny
    variant = dataclasses.replace(
        profiles.TINY,
        name="resume",
        pretrain=dataclasses.replace(profiles.TINY.pretrain, seed=7),  # a new artifact version
    )
    monkeypatch.setitem(profiles.PROFILES, "resume", variant)
    monkeypatch.setenv("FASTDRAFT_CHECKPOINT_EVERY", "2")
    defs = build_defs("resume", str(root))
    partition = root / "pretrained_draft" / "tiny-random"
    killed = []

    def kill_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 300
        while not list(partition.glob(".*.partial/_checkpoints/LATEST")):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        for child in psutil.Process().children(recursive=True):
            if "fastdraft_dag.training.run" in " ".join(child.cmdline()):
                child.kill()
                killed.append(child.pid)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    first = _run(defs, instance, selection="pretrained_draft")
    watcher.join(timeout=60)
    assert killed and not first.success
    (partial,) = partition.glob(".*.partial")
    assert (partial / "_checkpoints" / "LATEST").is_file()

    second = _run(defs, instance, selection="pretrained_draft")
    assert second.success
    messages = [r.user_message for r in instance.all_logs(second.run_id)]
    assert any("resuming from step-" in m for m in messages), messages[-30:]
    final = Path(_metadata(second, "pretrained_draft")["path"])
    assert final.name == partial.name.split(".")[1] and not partial.exists()
    assert not (final / "_checkpoints").exists() and (final / "tensorboard").is_dir()


def _snippets(card: str) -> list[str]:
    """The card's python code blocks: transformers first, then openvino_genai."""
    blocks = [b.split("```", 1)[0] for b in card.split("```python\n")[1:]]
    assert len(blocks) == 2, card
    return blocks


def _run_snippet(code: str, folder: Path, target: Path, target_ir: Path) -> str:
    import re
    import subprocess
    import sys

    code = re.sub(r'^TARGET = ".*"', f'TARGET = "{target}"', code, flags=re.M)
    code = re.sub(r'^TARGET_IR = ".*"', f'TARGET_IR = "{target_ir}"', code, flags=re.M)
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_release_loads_as_is_and_its_snippets_decode_like_plain(tiny, tmp_path):
    """The release folder is a transformers model and ships an IR; each card snippet, run from
    the folder, gives plain decoding's greedy text: the tiny run's chosen mode, and SD at k=2."""
    from transformers import AutoModelForCausalLM

    from fastdraft_dag.evaluation.modes import ModeChoice
    from fastdraft_dag.evaluation.results import write_release
    from fastdraft_dag.reporting.model_card import release_card
    from fastdraft_dag.reporting.usage import openvino_snippet, transformers_snippet
    from fastdraft_dag.targets.resolve import resolve_target

    root, defs, _, _ = tiny
    store = ArtifactStore(root)
    bench = store.latest("benchmark_tables", "tiny-random").path
    irs = store.latest("openvino_ir", "tiny-random").path
    draft = store.latest("aligned_draft", "tiny-random").path
    target = resolve_target("embedded:tiny-random", CACHE / "targets").path
    target_ir = irs / f"target-{profiles.TINY.export.target_format}"
    release = bench / "release"
    card = (release / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n") and "license: apache-2.0" in card
    assert "- speculative-decoding" in card
    if is_eagle3_dir(release):  # the head won: the folder is the SGLang/vLLM layout
        load_head(release)
    else:
        AutoModelForCausalLM.from_pretrained(release)  # loads as-is
    hf_config = json.loads((release / "generation_config.json").read_text())
    choice = json.loads((release / "release.json").read_text())
    plain = {"mode": "plain", "k": None}
    want_hf = _run_snippet(transformers_snippet(plain, "x", 3), release, target, target_ir)
    want_ov = _run_snippet(openvino_snippet(plain, "x", "CPU", 3), release, target, target_ir)
    assert want_hf.strip() and len(want_ov) > 1  # the random target: mostly whitespace via OV

    sd = dict(choice, chosen={**choice["plain"], "mode": "sd", "k": 2, "label": "sd k=2"})
    sd_card = release_card(target="embedded:tiny-random", draft_precision="int8", choice=sd,
                           device="CPU", summary_md="", images={}, lineage={})  # fmt: skip
    sd_release = write_release(tmp_path / "release", irs / "draft-int8", ModeChoice.from_dict(sd),
                               sd_card, draft_dir=draft)  # fmt: skip
    sd_config = json.loads((sd_release / "generation_config.json").read_text())
    assert sd_config["num_assistant_tokens"] == 2
    assert sd_config["num_assistant_tokens_schedule"] == "constant"
    if choice["chosen"]["mode"] == "sd":
        assert "num_assistant_tokens" in hf_config or "assistant_confidence_threshold" in hf_config
    for folder, text in ((release, card), (sd_release, sd_card)):
        hf_code, ov_code = _snippets(text)
        # transformers' prompt lookup can emit one token past max_new_tokens (measured with
        # 5.5.4 at k=3 and 5): greedy equality is judged on the tokens plain decoding made.
        got_hf = _run_snippet(hf_code, folder, target, target_ir)
        assert got_hf.rstrip("\n").startswith(want_hf.rstrip("\n")), (got_hf, want_hf)
        assert _run_snippet(ov_code, folder, target, target_ir) == want_ov


def test_fastdraft_bench_scores_any_draft_on_user_prompts(tiny, tmp_path, capsys):
    """`fastdraft bench` on the tiny release with a user prompt file: the same tables, DuckDB
    rows marked ad-hoc (never a graph run's baseline), a KD-overlap warning, and a tokenizer
    mismatch refused naming both sides."""
    import shutil

    from fastdraft_dag.cli import main
    from fastdraft_dag.storage.tables import previous_acceptance

    root, _, _, _ = tiny
    store = ArtifactStore(root)
    release = store.latest("benchmark_tables", "tiny-random").path / "release"
    if is_eagle3_dir(release):  # the head won on this host: bench scores standalone drafts
        with pytest.raises(ValueError, match="an EAGLE-3 head"):
            locate_draft(release)
        release = store.latest("aligned_draft", "tiny-random").path
    kd_row = next(
        json.loads(line)
        for line in (store.latest("synthetic_kd_dataset", "tiny-random").path / "kd.jsonl")
        .read_text()
        .splitlines()
        if len(json.loads(line)["prompt"].split()) > 20
    )
    prompts = tmp_path / "mine.jsonl"
    rows = [
        {"id": "mine/1", "task": "mine", "prompt": "Write a haiku about the sea.", "chat": True},
        {"id": "mine/2", "task": "mine", "prompt": kd_row["prompt"], "chat": kd_row["chat"]},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["bench", "--profile", "tiny", "--root", str(root), "--target", "embedded:tiny-random",
            "--prompts", str(prompts), "--per-family", "1", "--ks", "2", "--max-new-tokens", "8",
            "--target-format", "fp16"]  # fmt: skip
    assert main([*args, "--draft", str(release)]) == 0
    out = capsys.readouterr()
    assert "Ad-hoc benchmark" in out.out and "| mine |" in out.out
    assert "| torch-fp32 |" in out.out and "| plain |" in out.out
    assert "share a 13-word n-gram with the KD prompts" in out.err and "mine/2" in out.err
    adhoc = query(
        root / "fastdraft.duckdb",
        "SELECT DISTINCT artifact_version, task FROM benchmark_offline WHERE run_kind = 'adhoc'",
    )
    assert {r["task"] for r in adhoc} >= {"mine", "code", "all"}
    graph = store.latest("benchmark_tables", "tiny-random").manifest["version"]
    previous, _ = previous_acceptance(root / "fastdraft.duckdb", "embedded:tiny-random", graph)
    assert previous is None or not previous.startswith("adhoc")

    # A draft whose chat template differs in a clause (as Qwen2.5-Coder 0.5B and 1.5B do) decodes
    # the same tokens: benchmarked, with a warning that shows where the templates part.
    templated = tmp_path / "templated-draft"
    shutil.copytree(release, templated)
    template = templated / "chat_template.jinja"
    template.write_text(template.read_text() + "{# tool calls #}")
    assert main([*args, "--draft", str(templated), "--offline"]) == 0
    out = capsys.readouterr().out
    assert "warning: --draft at" in out and "chat template: differ at character" in out
    assert "tool calls" in out and "| torch-fp32 |" in out

    other = tmp_path / "other-draft"
    shutil.copytree(release, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["zzzunseen"] = vocab.pop(next(iter(vocab)))
    (other / "tokenizer.json").write_text(json.dumps(tok))
    assert main([*args, "--draft", str(other), "--live"]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "target" in err
