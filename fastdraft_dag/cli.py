"""`fastdraft`: materialize the graph from a shell, manage targets, print the benchmark table.

The same Definitions the UI serves, executed in process against the persistent instance under
the artifact root (when DAGSTER_HOME points there), so CLI runs show up in `make ui`'s history.

  fastdraft run [--profile P] [--config F] [--partition KEY] [--select SEL] [--stale-only]
  fastdraft report [--profile P] [--config F] [--partition KEY]
  fastdraft config show [--profile P] [--config F | --artifact PATH]
  fastdraft targets add ID [--revision R] [--trust-remote-code]
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

from fastdraft_dag.assets.automation import TARGET_CHAIN

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

    from fastdraft_dag.assets.automation import ensure_default_target, stale_asset_keys
    from fastdraft_dag.assets.partitions import TARGETS
    from fastdraft_dag.definitions import build_defs

    defs = build_defs(profile, root, target, config_file=config_file)
    pipeline = defs.resources["pipeline"]
    instance = _instance()
    if partition:
        pipeline.target_spec(partition)  # an unknown key fails here, naming the registered ones
        if not instance.has_dynamic_partition(TARGETS.name, partition):
            instance.add_dynamic_partitions(TARGETS.name, [partition])
        key = partition
    else:
        key = ensure_default_target(instance, pipeline)
    observed = defs.resolve_job_def("observe_targets").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False
    )
    if not observed.success:
        print(f"observing target_model [{key}] failed", file=sys.stderr)
        return False
    graph = defs.resolve_asset_graph()
    keys = dg.AssetSelection.from_coercible(selection).resolve(graph)
    keys = [k for k in graph.toposorted_asset_keys if k in keys and graph.get(k).is_materializable]
    if stale_only:
        stale = set(stale_asset_keys(defs, instance, key))
        keys = [k for k in keys if k in stale]
        print(
            f"stale or missing for {key}: {', '.join(k.to_user_string() for k in keys) or 'none'}"
        )
        if not keys:
            return True
    partitioned = any(graph.get(k).is_partitioned for k in keys)
    result = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=keys,
        partition_key=key if partitioned else None,
        raise_on_error=False,
    )
    return result.success


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
        rows.append(
            {
                "asset": asset,
                "build_seconds": art.manifest["build_seconds"],
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
    from fastdraft_dag.targets.resolve import target_key

    prof = load_profile(profile, target or None, config_file or None)
    key = partition or target_key(prof.target)
    times = asset_times(root, key)
    print("\n## Per-asset build time (seconds, from each artifact's manifest)\n")
    print(md_table(times))
    art = ArtifactStore(Path(root)).latest("benchmark_tables", key)
    tables = json.loads((art.path / "results.json").read_text())
    print(f"\n## Benchmark: target {partition or prof.target}, profile {profile}\n")
    print(render_benchmark(tables))


def targets_command(args: argparse.Namespace) -> int:
    from fastdraft_dag.assets.automation import register_targets
    from fastdraft_dag.assets.partitions import TARGETS
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
        spec = TargetSpec.parse(args.id, args.revision, args.trust_remote_code)
        try:
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
        default=os.environ.get("FASTDRAFT_PROFILE", "default"),
        help="preset the recipe starts from: tiny | default | paper "
        "(env FASTDRAFT_PROFILE; default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("FASTDRAFT_CONFIG", ""),
        metavar="RECIPE.yaml",
        help="recipe file overriding settings of the preset; its `base:` names the preset "
        "(env FASTDRAFT_CONFIG; settings: docs/settings.md)",
    )
    parser.add_argument(
        "--target",
        default=os.environ.get("FASTDRAFT_TARGET", ""),
        help="hub id or local directory replacing the recipe's target, registered on first use "
        "(env FASTDRAFT_TARGET)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; every option says what it is (tests/test_cli_help.py checks)."""
    common = argparse.ArgumentParser(add_help=False)
    _recipe_options(common)
    common.add_argument(
        "--root",
        default=os.environ.get("FASTDRAFT_HOME", "artifacts"),
        help="artifact root: artifacts, the DuckDB tables and targets.json "
        "(env FASTDRAFT_HOME; default: %(default)s)",
    )
    common.add_argument(
        "--partition", default="", help="a registered target's key (`fastdraft targets list`)"
    )
    parser = argparse.ArgumentParser(prog="fastdraft", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"fastdraft {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="materialize, then print the report")
    run.add_argument("--select", default="*", help="Dagster asset selection, e.g. 'openvino_ir*'")
    run.add_argument(
        "--stale-only",
        action="store_true",
        help="only the selected assets that are stale or missing (the UI's 'Unsynced')",
    )
    sub.add_parser("report", parents=[common], help="print the last benchmark table again")
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
    add.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the target's own modelling code from the hub",
    )
    tsub.add_parser("list", parents=[common], help="registered targets and their partitions")
    return parser


def main(argv: list[str] | None = None) -> int:
    from fastdraft_dag.config.schema import ProfileError as ConfigError

    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:  # a bad recipe or setting: say which, no traceback
        print(f"fastdraft {args.command}: {e}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "targets":
        return targets_command(args)
    if args.command == "config":
        return config_command(args)
    if args.command == "run":
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
        print(f"\nrun {'succeeded' if ok else 'FAILED'} in {time.time() - started:.0f} s")
        if not ok:
            return 1
    print_report(args.profile, args.root, args.target, args.partition, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
