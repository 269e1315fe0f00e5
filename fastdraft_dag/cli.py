"""`fastdraft`: materialize the graph from a shell, manage targets, print the benchmark table.

The same Definitions the UI serves, executed in process against the persistent instance under
the artifact root (when DAGSTER_HOME points there), so CLI runs show up in `make ui`'s history.

  fastdraft run [--profile P] [--config F] [--partition KEY] [--select SEL] [--stale-only] [--verify]
  fastdraft report [--profile P] [--config F] [--partition KEY] [--history]
  fastdraft config show [--profile P] [--config F | --artifact PATH]
  fastdraft artifacts verify [--root R] [--sizes-only]
  fastdraft bench --draft DIR [--target T] [--prompts F.jsonl ...] [--ks 2,3] [--offline|--live]
  fastdraft targets add ID [--revision R]
  fastdraft targets list
  fastdraft --version
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastdraft_dag.assets.common import INTERRUPTED, INTERRUPTED_RUNS
from fastdraft_dag.assets.partitions import TARGET_CHAIN
from fastdraft_dag.config.presets import PRESET_NAMES
from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.files import write_json_atomic, write_text_atomic
from fastdraft_dag.core.settings import read_setting

ORDER = ("filtered_corpora", *TARGET_CHAIN)


def _instance():
    import dagster as dg

    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def materialize_all(
    profile: str,
    root: str,
    target: str = "",
    selection: str = "*",
    partition: str = "",
    stale_only: bool = False,
    config_file: str = "",
) -> bool:
    """Observe the target, then materialize the selection; up-to-date artifacts are reused.

    The target is `partition` (a registered key) or the profile's target, registered on first
    use. With `stale_only`, only the selected assets that are stale or missing for that target
    run (what the UI's "Materialize unsynced" does). `config_file` is a recipe on top of the
    profile; it is validated while the Definitions are built, before anything runs.
    """
    import dagster as dg

    from fastdraft_dag.assets.partitions import TARGETS
    from fastdraft_dag.assets.registration import ensure_default_target
    from fastdraft_dag.assets.runs import (
        heal_dead_runs,
        process_tags,
        selection_pools,
        wait_for_pools,
    )
    from fastdraft_dag.assets.staleness import stale_asset_keys
    from fastdraft_dag.definitions import build_defs

    defs = build_defs(
        profile, root, target, read_setting("FASTDRAFT_SOURCES"), config_file=config_file
    )
    pipeline = defs.resources["pipeline"]
    instance = _instance()
    heal_dead_runs(instance, _say)
    tags = process_tags()
    if partition:
        pipeline.target_spec(partition)  # an unknown key fails here, naming the registered ones
        if not instance.has_dynamic_partition(TARGETS.name, partition):
            instance.add_dynamic_partitions(TARGETS.name, [partition])
        key = partition
    else:
        key = ensure_default_target(instance, pipeline)
    graph = defs.resolve_asset_graph()
    keys = selected_keys(graph, selection)  # a typo fails now, not after the observation
    observed = defs.resolve_job_def("observe_targets").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False, tags=tags
    )
    if not observed.success:
        print(f"observing target_model [{key}] failed: {failure_reason(observed)}", file=sys.stderr)
        return False
    if stale_only:
        stale = set(stale_asset_keys(defs, instance, key))
        keys = [k for k in keys if k in stale]
        print(
            f"stale or missing for {key}: {', '.join(k.to_user_string() for k in keys) or 'none'}"
        )
        if not keys:
            return True
    partitioned = any(graph.get(k).is_partitioned for k in keys)
    wait_for_pools(instance, selection_pools(defs, keys), _say)
    result = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=keys,
        partition_key=key if partitioned else None,
        raise_on_error=False,
        tags=tags,
    )
    return result.success


def failure_reason(result) -> str:
    """The first line of the innermost error of a failed run's first failed step: the user's
    exception (a TargetError naming the folder, say), not Dagster's wrapper around it."""
    failures = result.get_step_failure_events()
    if not failures:
        return "see the log above"
    error = failures[0].step_failure_data.error
    while error.cause is not None:
        error = error.cause
    first = error.message.strip().split("\n")[0]
    return first.split(f"{error.cls_name}: ", 1)[-1]  # "dagster...Failure: why" -> "why"


def selected_keys(graph, selection: str) -> list:
    """The materializable assets of a Dagster selection string, in graph order; a selection
    naming no such asset is refused with the asset names."""
    import dagster as dg

    names = sorted(k.to_user_string() for k in graph.materializable_asset_keys)
    try:
        found = dg.AssetSelection.from_coercible(selection).resolve(graph)
    except Exception as exc:  # Dagster raises several types for unknown keys and bad syntax
        reason = str(exc).split("\n")[0].split(". ")[0]
        raise InputError(f"--select {selection!r}: {reason}; assets: {', '.join(names)}") from exc
    keys = [k for k in graph.toposorted_asset_keys if k in found and graph.get(k).is_materializable]
    if not keys:
        raise InputError(f"--select {selection!r} selects no asset; assets: {', '.join(names)}")
    return keys


def check_root(root: str) -> Path:
    """The artifact root, refused up front when it is a file or cannot be written (every
    command that builds, registers or records writes there)."""
    path = Path(root).expanduser()
    if not str(root).strip():
        raise InputError("--root / FASTDRAFT_HOME is empty; name the artifact root")
    if path.exists() and not path.is_dir():
        raise InputError(f"artifact root {str(path)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"artifact root {str(path)!r}: cannot create it ({exc.strerror})") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"artifact root {str(path)!r} is not writable")
    return path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def asset_times(root: str, partition: str) -> list[dict]:
    from fastdraft_dag.storage.artifacts import ArtifactStore

    store, rows = ArtifactStore(Path(root)), []
    for asset in ORDER:
        part = "shared" if asset == "filtered_corpora" else partition
        try:
            art = store.latest(asset, part)
        except FileNotFoundError:
            rows.append({"asset": asset, "build_seconds": None, "version": "missing"})
            continue
        except ValueError as exc:  # an unreadable manifest or a file that differs from it
            rows.append({"asset": asset, "build_seconds": None, "version": f"broken: {exc}"})
            continue
        rows.append(
            {
                "asset": asset,
                "build_seconds": art.manifest["build_seconds"],
                "peak_rss_mib": art.manifest.get("peak_rss_mib"),
                "version": art.manifest["version"],
            }
        )
    return rows


def print_report(
    profile: str, root: str, target: str = "", partition: str = "", config_file: str = ""
) -> None:
    from fastdraft_dag.config.presets import load_profile
    from fastdraft_dag.reporting.tables import md_table, render_benchmark
    from fastdraft_dag.storage.artifacts import ArtifactStore
    from fastdraft_dag.targets.registry import TargetRegistry
    from fastdraft_dag.targets.resolve import target_key

    prof = load_profile(profile, target or None, config_file or None)
    if partition:
        TargetRegistry(Path(root)).get(partition)  # a typo is named with the registered keys
    key = partition or target_key(prof.target)
    times = asset_times(root, key)
    print("\n## Per-asset build time (seconds, from each artifact's manifest)\n")
    print(md_table(times))
    if times[-1]["version"] == "missing":  # a partial --select: the table above is the report
        print(f"\nbenchmark_tables [{key}] not built yet: no benchmark table to print")
        return
    try:
        art = ArtifactStore(Path(root)).latest("benchmark_tables", key)
        tables = json.loads((art.path / "results.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"benchmark_tables [{key}] under {root!r} is unreadable ({exc}); `fastdraft "
            "artifacts verify` names the broken files, `fastdraft run` rebuilds it"
        ) from exc
    print(f"\n## Benchmark: target {partition or prof.target}, profile {profile}\n")
    print(render_benchmark(tables))


def history_command(args: argparse.Namespace) -> int:
    """This target's graph benchmarks, oldest first: is scheduled retraining helping?"""
    from fastdraft_dag.reporting.tables import md_table
    from fastdraft_dag.resources.pipeline import FastDraftPipeline
    from fastdraft_dag.storage.tables import benchmark_history

    pipeline = FastDraftPipeline(
        profile_name=args.profile,
        config_file=args.config,
        artifact_root=args.root,
        target=args.target,
    )
    name = pipeline.target_spec(args.partition or None).name
    rows = benchmark_history(pipeline.db_path, name, read_only=True)
    print(f"\n## Benchmark history: {name} ({len(rows)} draft versions)\n")
    print(md_table(rows))
    return 0


def targets_command(args: argparse.Namespace) -> int:
    from fastdraft_dag.assets.partitions import TARGETS
    from fastdraft_dag.assets.registration import register_targets
    from fastdraft_dag.reporting.tables import md_table
    from fastdraft_dag.resources.pipeline import FastDraftPipeline
    from fastdraft_dag.targets.registry import TargetRegistryError, TargetSpec
    from fastdraft_dag.targets.resolve import TargetError

    pipeline = FastDraftPipeline(
        profile_name=args.profile,
        config_file=args.config,
        artifact_root=args.root,
        target=args.target,
    )
    instance = _instance()
    if args.action == "add":
        try:
            spec = TargetSpec.parse(args.id, args.revision)
            (key,) = register_targets(instance, pipeline.registry, [spec])
        except (TargetError, TargetRegistryError) as exc:
            print(f"fastdraft targets add: {exc}", file=sys.stderr)
            return 2
        print(f"registered {spec.name} @ {spec.revision} as partition {key}")
        return 0
    default = pipeline.default_target.key  # registered by the first run or the sensor
    partitions = set(instance.get_dynamic_partitions(TARGETS.name))
    specs = pipeline.registry.specs()
    rows = [
        {
            "key": key,
            "target": spec.name,
            "revision": spec.revision,
            "partition": "yes" if key in partitions else "no",
            "default": "yes" if key == default else "",
        }
        for key, spec in sorted({default: pipeline.default_target, **specs}.items())
    ]
    rows += [
        {"key": k, "target": "(not registered)", "revision": "", "partition": "yes", "default": ""}
        for k in sorted(partitions - set(specs))
    ]
    print(md_table(rows))
    return 0


def verify_command(args: argparse.Namespace) -> int:
    """Check every finished artifact under the root against its manifest; 1 if any is broken."""
    from fastdraft_dag.storage.artifacts import verify_root

    if not Path(args.root).is_dir():
        what = "is a file" if Path(args.root).exists() else "does not exist"
        raise InputError(f"artifact root {args.root!r} {what}: nothing to verify")
    report = verify_root(Path(args.root), "sizes" if args.sizes_only else "all")
    broken = superseded = 0
    for path, problems in report.items():
        latest = Path(path).parent / "LATEST"
        current = not latest.is_file() or latest.read_text().strip() == Path(path).name
        label = "ok     " if not problems else "BROKEN " if current else "old    "
        print(f"{label} {path}{'' if current or not problems else ' (superseded: not used)'}")
        for problem in problems:
            print(f"          {problem}")
        broken += bool(problems) and current
        superseded += bool(problems) and not current
    print(
        f"\n{len(report)} artifacts under {args.root}, {broken} broken"
        + (f", {superseded} superseded ones broken (safe to delete)" if superseded else "")
    )
    return 1 if broken else 0


def _bench_target(args: argparse.Namespace):
    """--partition (a registered key), --target (a registered key, hub id or directory), else
    the profile's target."""
    from fastdraft_dag.resources.pipeline import FastDraftPipeline

    pipeline = FastDraftPipeline(
        profile_name=args.profile, config_file=args.config, artifact_root=args.root
    )
    key = args.partition or (args.target if args.target in pipeline.registry.specs() else "")
    if key or not args.target:
        return pipeline, pipeline.resolve_target(key or None)
    from fastdraft_dag.targets.resolve import resolve_target

    return pipeline, resolve_target(args.target, pipeline.root / "targets")


def bench_command(args: argparse.Namespace) -> int:
    """Evaluate any draft against any target on built-in and/or the user's prompts."""
    import uuid

    from fastdraft_dag.evaluation.adhoc import AdhocJob, locate_draft, record_adhoc, run_adhoc
    from fastdraft_dag.evaluation.results import bench_prompt_set
    from fastdraft_dag.reporting.tables import render_benchmark
    from fastdraft_dag.resources.core_ultra import CoreUltraResource

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out!r} is a file: name a folder (it holds results.json/md)")
    try:
        ks = tuple(int(k) for k in args.ks.split(","))
    except ValueError:
        raise InputError(f"--ks {args.ks!r}: expected draft lengths like 2,3,4") from None
    try:
        prompts, _ = bench_prompt_set(args.per_family, args.prompts, setting="--per-family")
        pipeline, target = _bench_target(args)
        draft = locate_draft(Path(args.draft))
        both = not args.offline and not args.live
        job = AdhocJob(
            target_name=target.name,
            target_dir=target.path,
            target_revision=target.revision,
            draft=draft,
            prompts=prompts,
            ks=ks,
            offline=args.offline or both,
            live=args.live or both,
            max_new_tokens=args.max_new_tokens,
            target_format=args.target_format,
            draft_format=args.draft_format,
            threads=pipeline.profile.threads,
        )
        _warn_kd_overlap(pipeline, target.key, args.prompts)
        tables = run_adhoc(job, CoreUltraResource(device=args.device), pipeline.root / "adhoc")
    except (ValueError, FileNotFoundError) as exc:
        print(f"fastdraft bench: {exc}", file=sys.stderr)
        return 2
    run_id = f"adhoc-{uuid.uuid4().hex[:12]}"
    version = record_adhoc(pipeline.db_path, job, tables, run_id)
    out = Path(args.out or pipeline.root / "adhoc" / "runs" / version)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {**tables, "run_id": run_id, "draft": str(draft.path)})
    summary = render_benchmark(tables)
    write_text_atomic(out / "results.md", summary)
    print(f"\n## Ad-hoc benchmark: draft {draft.path} on {target.name}\n\n{summary}")
    print(f"\nrows in {pipeline.db_path} (run_kind 'adhoc', run_id {run_id}); files in {out}")
    return 0


def _warn_kd_overlap(pipeline, key: str, files: list[str]) -> None:
    """Warn when the user's prompts share text with this target's KD prompts, if any exist."""
    from fastdraft_dag.evaluation.adhoc import kd_contamination

    try:
        kd_file = pipeline.store.latest("synthetic_kd_dataset", key).path / "kd.jsonl"
    except (FileNotFoundError, ValueError):  # none (a draft from elsewhere), or a broken one
        return
    pairs = kd_contamination(kd_file, files)
    if pairs:
        shown = ", ".join(f"{e} ~ {k}" for k, e in pairs[:5])
        print(
            f"warning: {len(pairs)} evaluation prompts share a 13-word n-gram with the KD "
            f"prompts the draft was trained on ({shown}): their acceptance is optimistic",
            file=sys.stderr,
        )


def config_command(args: argparse.Namespace) -> int:
    """`config show`: the effective recipe (a preset, a recipe file on one, or an artifact's)."""
    from fastdraft_dag.config.presets import artifact_recipe, load_profile, recipe_yaml

    if args.artifact:
        profile, source = artifact_recipe(args.artifact), f"built {args.artifact}"
    else:
        profile = load_profile(args.profile, args.target or None, args.config or None)
        source = f"profile {args.profile}" + (f" + {args.config}" if args.config else "")
    print(recipe_yaml(profile, source), end="")
    return 0


def package_version() -> str:
    """The installed distribution's version (a checkout that was never installed has none)."""
    try:
        return version("fastdraft-dag")
    except PackageNotFoundError:
        return "0+unknown"


def _recipe_options(parser: argparse.ArgumentParser) -> None:
    """--profile, --config and --target: what every command that reads a recipe takes."""
    parser.add_argument(
        "--profile",
        default=read_setting("FASTDRAFT_PROFILE"),
        help=f"preset the recipe starts from: {' | '.join(PRESET_NAMES)} "
        "(env FASTDRAFT_PROFILE; default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        default=read_setting("FASTDRAFT_CONFIG"),
        metavar="RECIPE.yaml",
        help="recipe file overriding settings of the preset; its `base:` names the preset "
        "(env FASTDRAFT_CONFIG; settings: docs/settings.md)",
    )
    parser.add_argument(
        "--target",
        default=read_setting("FASTDRAFT_TARGET"),
        help="hub id or local directory replacing the recipe's target, registered on first use "
        "(env FASTDRAFT_TARGET)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every option says what it is (tests/test_cli.py checks)."""
    common = argparse.ArgumentParser(add_help=False)
    _recipe_options(common)
    common.add_argument(
        "--root",
        default=read_setting("FASTDRAFT_HOME"),
        help="artifact root: artifacts, the DuckDB tables and targets.json "
        "(env FASTDRAFT_HOME; default: %(default)s)",
    )
    common.add_argument(
        "--partition", default="", help="a registered target's key (`fastdraft targets list`)"
    )
    common.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an input error (default: one line)",
    )
    parser = argparse.ArgumentParser(prog="fastdraft", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"fastdraft {package_version()}")
    parser.set_defaults(debug=False)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="materialize, then print the report")
    run.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'openvino_ir*'")
    run.add_argument(
        "--stale-only",
        action="store_true",
        help="only the selected assets that are stale or missing (the UI's 'Unsynced')",
    )
    run.add_argument(
        "--verify",
        action="store_true",
        help="a reused artifact's every file is checksummed (default: sizes, and checksums of "
        "what the next step reads); same as FASTDRAFT_VERIFY=all",
    )
    report = sub.add_parser("report", parents=[common], help="print the last benchmark table again")
    report.add_argument(
        "--history",
        action="store_true",
        help="print the target's benchmarks over time instead (acceptance, speedups; DuckDB)",
    )
    artifacts = sub.add_parser("artifacts", help="check artifacts against their manifests")
    asub = artifacts.add_subparsers(dest="action", required=True)
    check = asub.add_parser("verify", parents=[common], help="check every artifact under --root")
    check.add_argument("--sizes-only", action="store_true", help="sizes only, no checksums")
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="evaluate any draft against any target without the graph (offline and/or live)",
    )
    bench.add_argument(
        "--draft", required=True, help="a Hugging Face directory, a release folder or a draft IR"
    )
    bench.add_argument(
        "--prompts",
        action="append",
        default=[],
        metavar="F.jsonl",
        help="evaluation prompts {id, task, prompt[, chat]} (repeatable); never KD inputs",
    )
    bench.add_argument(
        "--per-family", type=int, default=8, help="built-in prompts per family (0: only --prompts)"
    )
    bench.add_argument("--ks", default="2,3,4", help="draft lengths k, comma-separated")
    bench.add_argument("--offline", action="store_true", help="acceptance from logits only")
    bench.add_argument("--live", action="store_true", help="wall-clock decoding modes only")
    bench.add_argument("--device", default="CPU", help="OpenVINO device (CPU, GPU, NPU)")
    bench.add_argument("--max-new-tokens", type=int, default=64, help="tokens per prompt")
    bench.add_argument("--target-format", default="int8", help="precision of the target's IR")
    bench.add_argument(
        "--draft-format", default="int8", help="precision of the draft's IR (given or exported)"
    )
    bench.add_argument("--out", default="", help="results folder (default: <root>/adhoc/runs/…)")
    config = sub.add_parser("config", help="print recipes (presets, recipe files, artifacts')")
    csub = config.add_subparsers(dest="action", required=True)
    show = csub.add_parser("show", help="print the effective recipe as YAML (loads back as-is)")
    _recipe_options(show)
    show.add_argument(
        "--artifact",
        metavar="PATH",
        help="print the recipe that built this artifact instead (its directory, its "
        "manifest.json, or <root>/<asset>/<partition> for the latest)",
    )
    targets = sub.add_parser("targets", help="register and list targets (one partition each)")
    tsub = targets.add_subparsers(dest="action", required=True)
    add = tsub.add_parser(
        "add", parents=[common], help="register a hub id, directory or embedded name"
    )
    add.add_argument("id", help="org/model[@revision], a local HF directory, or embedded:<name>")
    add.add_argument("--revision", default="main", help="hub branch, tag or commit")
    tsub.add_parser("list", parents=[common], help="registered targets and their partitions")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except InputError as e:  # bad input: one line naming it, no traceback (unless --debug)
        if args.debug:
            raise
        print(f"fastdraft {args.command}: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("run", "targets", "bench"):
        check_root(args.root)
    elif not str(getattr(args, "root", "x")).strip():
        raise InputError("--root / FASTDRAFT_HOME is empty; name the artifact root")
    if args.command == "targets":
        return targets_command(args)
    if args.command == "bench":
        return bench_command(args)
    if args.command == "artifacts":
        return verify_command(args)
    if args.command == "config":
        return config_command(args)
    if args.command == "run":
        if args.verify:
            os.environ["FASTDRAFT_VERIFY"] = "all"
        started = time.time()
        ok = materialize_all(
            args.profile,
            args.root,
            args.target,
            args.select,
            args.partition,
            args.stale_only,
            args.config,
        )
        took = f"{time.time() - started:.0f} s"
        if INTERRUPTED_RUNS:
            print(f"\nrun {INTERRUPTED} ({took})", file=sys.stderr)
            return 130  # what a shell reports for a command ended by Ctrl-C
        print(f"\nrun {'succeeded' if ok else 'FAILED'} in {took}")
        if not ok:
            return 1
    if getattr(args, "history", False):
        return history_command(args)
    print_report(args.profile, args.root, args.target, args.partition, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
