"""Operations: the retraining window, staleness, targets as partitions, bad input, DuckDB writers.

Automation is evaluated with `dagster.evaluate_automation_conditions` on the real definitions
(their conditions, asset graph, code versions and checks). Materializations come from
stand-ins built from the same specs that finish at once, and target revisions from runless
observations: these tests are about *what runs when*, not about training.
"""

import datetime
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest

from fastdraft_dag.assets.dagster_internals import DATA_VERSION_TAG
from fastdraft_dag.assets.partitions import TARGET_CHAIN
from fastdraft_dag.assets.registration import build_target_partitions_sensor, register_targets
from fastdraft_dag.assets.schedules import ScheduleConfigError, validate_cron
from fastdraft_dag.assets.staleness import stale_asset_keys
from fastdraft_dag.definitions import build_defs
from fastdraft_dag.resources.pipeline import FastDraftPipeline
from fastdraft_dag.targets.registry import TargetRegistry, TargetRegistryError, TargetSpec
from fastdraft_dag.targets.resolve import TargetError, local_dir_revision

CHAIN = [dg.AssetKey(k) for k in TARGET_CHAIN]


def _stub(a: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The asset with its specs and checks, materializing instantly with passing checks."""
    specs, checks = list(a.specs), list(a.check_specs)

    @dg.multi_asset(specs=specs, check_specs=checks, name=f"stub_{a.node_def.name}")
    def stub(context: dg.AssetExecutionContext):
        part = context.partition_key if context.has_partition_key else ""
        for spec in specs:
            yield dg.MaterializeResult(
                asset_key=spec.key, data_version=dg.DataVersion(f"{spec.key.path[-1]}-{part}")
            )
        for c in checks:
            yield dg.AssetCheckResult(asset_key=c.asset_key, check_name=c.name, passed=True)

    return stub


def _observe(instance: dg.DagsterInstance, partition: str, revision: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetObservation("target_model", partition=partition, tags={DATA_VERSION_TAG: revision})
    )


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, partitions: list[str]):
    stubs = [
        _stub(a) if isinstance(a, dg.AssetsDefinition) and a.is_materializable else a
        for a in defs.assets
    ]
    kw = {"instance": instance, "resources": defs.resources}
    assert dg.materialize(stubs, selection=["filtered_corpora"], **kw).success
    for p in partitions:
        assert dg.materialize(stubs, selection=CHAIN, partition_key=p, **kw).success


def _requested(result) -> set[tuple[str, str | None]]:
    return {
        (r.key.to_user_string(), p)
        for r in result.results
        if isinstance(r.key, dg.AssetKey)
        for p in result.get_requested_partitions(r.key)
    }


@pytest.fixture
def times():
    """Evaluation times after now: a morning, then the next 02:00 windows (cron 0 2 * * *)."""
    now = datetime.datetime.now(datetime.UTC)
    morning = (now + datetime.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    window = (morning + datetime.timedelta(days=1)).replace(hour=2, minute=1)
    return morning, window


@pytest.fixture
def graph(tmp_path):
    """Two registered targets, both fully materialized and observed at revision r1."""
    defs = build_defs("tiny", str(tmp_path), retrain_cron="0 2 * * *", cron_timezone="UTC")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("targets", ["a", "b"])
    for p in ("a", "b"):
        _observe(instance, p, "r1")
    _materialize(defs, instance, ["a", "b"])
    return defs, instance


def _evaluate(defs, instance, when, cursor=None):
    return dg.evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=when, cursor=cursor
    )


def test_unchanged_target_starts_nothing(graph, times):
    defs, instance = graph
    morning, window = times
    r = _evaluate(defs, instance, morning)
    assert r.total_requested == 0
    for p in ("a", "b"):
        _observe(instance, p, "r1")  # the hourly observation: same revision
    r = _evaluate(defs, instance, window, r.cursor)
    assert r.total_requested == 0, _requested(r)
    assert stale_asset_keys(defs, instance, "a") == []


def test_changed_target_retrains_exactly_its_chain_in_the_next_window(graph, times):
    defs, instance = graph
    morning, window = times
    r = _evaluate(defs, instance, morning)
    _observe(instance, "a", "r2")  # target a moved to a new commit
    r = _evaluate(defs, instance, morning + datetime.timedelta(hours=1), r.cursor)
    assert r.total_requested == 0, "nothing runs before the window"
    assert set(stale_asset_keys(defs, instance, "a")) == set(CHAIN)
    assert stale_asset_keys(defs, instance, "b") == []
    r = _evaluate(defs, instance, window, r.cursor)
    assert _requested(r) == {(k, "a") for k in TARGET_CHAIN}
    r = _evaluate(defs, instance, window + datetime.timedelta(minutes=1), r.cursor)
    assert r.total_requested == 0, "requested once, not again"


def test_code_version_bump_of_aligned_draft_waits_for_the_window(graph, times):
    defs, instance = graph
    morning, window = times
    r = _evaluate(defs, instance, morning)
    bumped = dg.Definitions(
        assets=[
            a.map_asset_specs(lambda s: s.replace_attributes(code_version="bumped"))
            if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("aligned_draft") in a.keys
            else a
            for a in defs.assets
        ],
        resources=defs.resources,
    )
    downstream = {"aligned_draft", "openvino_ir", "benchmark_tables"}
    for p in ("a", "b"):
        # Dagster's Unsynced: the bumped asset itself (its children follow once it rebuilds)...
        unsynced = {k.to_user_string() for k in stale_asset_keys(bumped, instance, p, False)}
        assert unsynced == {"aligned_draft"}
        # ...and what `fastdraft run --stale-only` rebuilds: it and everything below it.
        stale = {k.to_user_string() for k in stale_asset_keys(bumped, instance, p)}
        assert stale == downstream
    # The code location reloads with the bump: training does not start.
    r = _evaluate(bumped, instance, morning + datetime.timedelta(minutes=5), r.cursor)
    assert r.total_requested == 0
    r = _evaluate(bumped, instance, window, r.cursor)
    assert _requested(r) == {(k, p) for k in downstream for p in ("a", "b")}


def test_added_target_is_built_in_the_next_window_once_observed(graph, times):
    defs, instance = graph
    morning, window = times
    r = _evaluate(defs, instance, morning)
    instance.add_dynamic_partitions("targets", ["c"])
    r = _evaluate(defs, instance, morning + datetime.timedelta(minutes=5), r.cursor)
    _observe(instance, "c", "r1")
    r = _evaluate(defs, instance, window, r.cursor)
    assert _requested(r) == {(k, "c") for k in TARGET_CHAIN}


# -- schedules and bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "env", "named"),
    [
        ({"retrain_cron": "every night"}, {}, "FASTDRAFT_RETRAIN_CRON='every night'"),
        ({}, {"FASTDRAFT_OBSERVE_CRON": "61 * * * *"}, "FASTDRAFT_OBSERVE_CRON='61 * * * *'"),
        ({"cron_timezone": "Mars/Olympus"}, {}, "FASTDRAFT_CRON_TZ='Mars/Olympus'"),
    ],
)
def test_invalid_schedule_is_a_clear_error_and_changes_nothing(
    tmp_path, monkeypatch, kwargs, env, named
):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("targets", ["a"])
    with pytest.raises(ScheduleConfigError) as err:
        build_defs("tiny", str(tmp_path), **kwargs)
    assert named in str(err.value)
    assert instance.get_dynamic_partitions("targets") == ["a"]
    assert instance.get_run_records() == []
    assert list(tmp_path.iterdir()) == []


def test_cron_validation():
    assert validate_cron("X", " 0 2 * * * ") == "0 2 * * *"
    for bad in ("", "0 2 * *", "0 25 * * *", "nightly"):
        with pytest.raises(ScheduleConfigError, match="not a valid cron string"):
            validate_cron("X", bad)


def _local_target(tmp_path: Path, name: str = "My-Model") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return d


def test_register_add_list_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub id is checked against the hub: refused
    instance = dg.DagsterInstance.ephemeral()
    registry = TargetRegistry(tmp_path / "root")
    model = _local_target(tmp_path)
    (key,) = register_targets(instance, registry, [TargetSpec.parse(str(model))])
    assert key == "my-model" and registry.get(key).name == str(model.resolve())
    assert instance.get_dynamic_partitions("targets") == ["my-model"]
    snapshot = registry.path.read_bytes()

    bad = [
        ([TargetSpec.parse(str(model))], TargetRegistryError, "already registered"),
        ([TargetSpec.parse("/no/such/dir")], TargetError, "/no/such/dir"),
        ([TargetSpec.parse("just words")], TargetError, "just words"),
        ([TargetSpec.parse("someorg/no-such-model")], TargetError, "someorg/no-such-model"),
        ([TargetSpec("embedded:nope")], TargetError, "unknown embedded target"),
        # one good and one bad target: neither is registered
        (
            [TargetSpec.parse(str(_local_target(tmp_path, "other"))), TargetSpec("x/")],
            TargetError,
            "'x/'",
        ),
        (
            [TargetSpec.parse(str(tmp_path / "other"))] * 2,
            TargetRegistryError,
            "more than once",
        ),
    ]
    for specs, exc, message in bad:
        with pytest.raises(exc, match=message):
            register_targets(instance, registry, specs)
        assert registry.path.read_bytes() == snapshot, message
        assert instance.get_dynamic_partitions("targets") == ["my-model"], message


def test_unknown_partition_key_is_a_clear_error(tmp_path):
    pipeline = FastDraftPipeline(profile_name="tiny", artifact_root=str(tmp_path))
    assert pipeline.target_spec("tiny-random").name == "embedded:tiny-random"
    assert pipeline.target_spec("smollm2-135m-instruct").name == "embedded:smollm2-135m-instruct"
    with pytest.raises(TargetRegistryError, match="'nonsense': not a registered target"):
        pipeline.resolve_target("nonsense")


def test_register_targets_job_from_run_config(tmp_path):
    defs = build_defs("tiny", str(tmp_path / "root"))
    job = defs.resolve_job_def("register_targets")
    instance = dg.DagsterInstance.ephemeral()
    model = _local_target(tmp_path)
    config = {"ops": {"register_targets_op": {"config": {"targets": [str(model)]}}}}
    assert job.execute_in_process(run_config=config, instance=instance).success
    assert instance.get_dynamic_partitions("targets") == ["my-model"]
    again = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not again.success
    failure = next(e for e in again.all_events if e.is_step_failure)
    assert "already registered" in str(failure.event_specific_data.error)
    assert instance.get_dynamic_partitions("targets") == ["my-model"]


def test_partitions_sensor_registers_default_and_ui_added_ids(tmp_path):
    """A fresh instance gets the profile's target; a directory typed into the UI's "Add
    partition" is registered under its key and replaces the raw key; nonsense is reported once."""
    pipeline = FastDraftPipeline(profile_name="tiny", artifact_root=str(tmp_path / "root"))
    sensor = build_target_partitions_sensor()
    instance = dg.DagsterInstance.ephemeral()

    def tick(cursor=None):
        ctx = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"pipeline": pipeline}
        )
        return sensor(ctx), ctx

    result, _ = tick()
    (add,) = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["tiny-random"]
    instance.add_dynamic_partitions("targets", ["tiny-random"])

    model = _local_target(tmp_path)
    instance.add_dynamic_partitions("targets", [str(model), "nonsense"])  # typed in the UI
    result, ctx = tick()
    add, delete = result.dynamic_partitions_requests
    assert list(add.partition_keys) == ["my-model"]
    assert list(delete.partition_keys) == [str(model)]
    assert "nonsense" in ctx.cursor and pipeline.registry.get("my-model").name == str(model)

    instance.delete_dynamic_partition("targets", str(model))
    instance.add_dynamic_partitions("targets", ["my-model"])
    result, _ = tick(ctx.cursor)
    assert isinstance(result, dg.SkipReason)


def test_target_model_observes_each_partition(tmp_path):
    """The real observation: one observation per target, the revision of its files."""
    model = _local_target(tmp_path)
    defs = build_defs("tiny", str(tmp_path / "root"))
    instance = dg.DagsterInstance.ephemeral()
    register_targets(instance, defs.resources["pipeline"].registry, [TargetSpec.parse(str(model))])
    job = defs.resolve_job_def("observe_targets")
    assert job.execute_in_process(instance=instance, partition_key="my-model").success
    (obs,) = instance.fetch_observations(dg.AssetKey("target_model"), limit=5).records
    assert obs.partition_key == "my-model"
    assert obs.asset_observation.data_version == local_dir_revision(model)
    (model / "tokenizer.json").write_text("{}")  # the target changed on disk
    assert job.execute_in_process(instance=instance, partition_key="my-model").success
    latest = instance.fetch_observations(dg.AssetKey("target_model"), limit=1).records[0]
    assert latest.asset_observation.data_version == local_dir_revision(model)
    assert latest.asset_observation.data_version != obs.asset_observation.data_version


# -- DuckDB ----------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    from fastdraft_dag.storage.tables import record_rows
    db, name = sys.argv[1], sys.argv[2]
    for i in range(25):
        rows = [{"target": name, "task": f"t{j}", "k": j, "alpha_greedy": 0.5} for j in range(8)]
        record_rows(db, "benchmark_offline", f"{name}-{i}", rows, f"run-{name}")
    """
)


def test_two_writers_do_not_corrupt_duckdb(tmp_path):
    """Two processes writing at once (runs outside the duckdb_writer pool do): both wait for
    the file lock instead of failing, and every row lands once."""
    from fastdraft_dag.storage.tables import connect, query

    db = tmp_path / "fastdraft.duckdb"
    con = connect(db)  # held while both writers start: they must wait, not fail
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), name], stderr=subprocess.PIPE)
        for name in ("one", "two")
    ]
    import time

    time.sleep(1.0)
    con.close()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    rows = query(db, "SELECT target, count(*) AS n FROM benchmark_offline GROUP BY target")
    assert {r["target"]: r["n"] for r in rows} == {"one": 200, "two": 200}
    versions = query(db, "SELECT count(DISTINCT artifact_version) AS n FROM benchmark_offline")
    assert versions[0]["n"] == 50


def test_training_runs_carry_a_max_runtime(tmp_path):
    """Run monitoring reads dagster/max_runtime from run tags only: the retrain job and the
    automation sensor's runs carry it. An asset-level tag was ignored, so no asset has one
    (pretrained_draft and aligned_draft did, promising a budget nothing enforced)."""
    defs = build_defs("tiny", str(tmp_path))
    tag = dg.MAX_RUNTIME_SECONDS_TAG
    assert int(defs.resolve_job_def("retrain_target").tags[tag]) >= 36 * 3600
    sensor = defs.resolve_sensor_def("retrain_window")
    assert int(sensor.run_tags[tag]) >= 36 * 3600
    graph = defs.resolve_asset_graph()
    tagged = [k.to_user_string() for k in graph.get_all_asset_keys() if tag in graph.get(k).tags]
    assert tagged == []


# ----------------------------------------------------------------------------- drops metadata


def test_kd_checks_report_generation_drops_under_the_one_key() -> None:
    from fastdraft_dag.assets.alignment import KD_TRUNCATED, kd_quality_checks
    from fastdraft_dag.core.drops import Drops

    quality = {"rows": 5, "by_task": {"chat": 5}, "empty": 0, "truncated": 1}
    quality["truncated_fraction"] = 0.2
    checks = kd_quality_checks(quality, Drops({"truncated": 2, "empty_response": 1}))
    for check in checks:
        assert check.metadata["drops"].value == {"empty_response": 1, "truncated": 2}
        assert not {"dropped_at_generation", "truncated_dropped"} & set(check.metadata)
    truncated = next(c for c in checks if c.check_name == KD_TRUNCATED)
    assert not truncated.passed and "2 answers stopped at max_new_tokens" in truncated.description


def test_sft_drops_name_their_phase() -> None:
    from fastdraft_dag.assets.common import DROPS, drops_metadata, sft_drops

    sft = {"dropped_unfinished": 3, "dropped_prompt_too_long": 0, "train": 9}
    drops = sft_drops(sft, {"skipped_prompt_too_long": 2})
    assert drops_metadata(drops)[DROPS].value == {
        "on_policy:prompt_too_long": 2,
        "sft:unfinished": 3,
    }
    assert drops_metadata(sft_drops({}, {}))[DROPS].value == {}
