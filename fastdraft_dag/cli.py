"""`fastdraft`: materialize the graph from a shell and print the benchmark table.

The same Definitions the UI serves, executed in process against the persistent instance under
the artifact root (when DAGSTER_HOME points there), so CLI runs show up in `make ui`'s history.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ORDER = (
    "filtered_corpora",
    "tokenized_shards",
    "pretrained_draft",
    "synthetic_kd_dataset",
    "aligned_draft",
    "openvino_ir",
    "benchmark_tables",
)


def _instance():
    import dagster as dg

    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def materialize_all(profile: str, root: str, target: str = "", selection: str = "*") -> bool:
    """Observe the target, then materialize the selection; up-to-date artifacts are reused."""
    import dagster as dg

    from fastdraft_dag.definitions import build_defs

    defs = build_defs(profile, root, target)
    instance = _instance()
    assets = list(defs.assets)
    resources = defs.resources
    defs.resolve_job_def("observe_targets").execute_in_process(instance=instance)
    result = dg.materialize(
        assets, instance=instance, resources=resources, selection=selection, raise_on_error=False
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


def print_report(profile: str, root: str, target: str = "") -> None:
    from fastdraft_dag.profiles import load_profile
    from fastdraft_dag.report import md_table, render_benchmark
    from fastdraft_dag.storage.artifacts import ArtifactStore
    from fastdraft_dag.target import target_key

    prof = load_profile(profile, target or None)
    key = target_key(prof.target)
    times = asset_times(root, key)
    print("\n## Per-asset build time (seconds, from each artifact's manifest)\n")
    print(md_table(times))
    art = ArtifactStore(Path(root)).latest("benchmark_tables", key)
    tables = json.loads((art.path / "results.json").read_text())
    print(f"\n## Benchmark: target {prof.target}, profile {profile}\n")
    print(render_benchmark(tables))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastdraft", description=__doc__)
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--profile", default=os.environ.get("FASTDRAFT_PROFILE", "default"))
    parser.add_argument("--root", default=os.environ.get("FASTDRAFT_HOME", "artifacts"))
    parser.add_argument("--target", default=os.environ.get("FASTDRAFT_TARGET", ""))
    parser.add_argument(
        "--select", default="*", help="Dagster asset selection, e.g. 'openvino_ir*'"
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        started = time.time()
        ok = materialize_all(args.profile, args.root, args.target, args.select)
        print(f"\nrun {'succeeded' if ok else 'FAILED'} in {time.time() - started:.0f} s")
        if not ok:
            return 1
    print_report(args.profile, args.root, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
