"""Content-addressed artifact directories with manifests and atomic writes.

Each materialization writes `<root>/<asset>/<partition>/<version>/`, where `version` is a hash of
the asset's code version, its config and its inputs' data versions. The directory is built under a
temporary name and renamed into place only when complete, so a failed or killed run never leaves a
half-written artifact and the previous good one stays readable. Because the version is derived
from everything that determines the output, a rerun with nothing changed finds the finished
directory and recomputes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_checksums(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[str(path.relative_to(root))] = h.hexdigest()
    return out


@dataclass(frozen=True)
class Artifact:
    """A finished artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def data_version(self) -> str:
        return self.manifest["data_version"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})


def read_artifact(path: Path) -> Artifact:
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"artifact {str(path)!r}: no {MANIFEST} (incomplete or not built)")
    return Artifact(Path(path), json.loads(manifest_path.read_text()))


class ArtifactStore:
    """The artifact root: `<root>/<asset>/<partition>/<version>/` plus a `latest` pointer."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def directory(self, asset: str, partition: str, version: str) -> Path:
        return self.root / asset / partition / version

    def latest(self, asset: str, partition: str) -> Artifact:
        pointer = self.root / asset / partition / "LATEST"
        if not pointer.is_file():
            raise FileNotFoundError(
                f"asset {asset!r} [{partition}]: never materialized under {self.root}; "
                "materialize it (and its upstream assets) first"
            )
        return read_artifact(self.root / asset / partition / pointer.read_text().strip())

    def build(
        self,
        asset: str,
        partition: str,
        *,
        code_version: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, str],
        build: Callable[[Path], Mapping[str, Any]],
        resumable: bool = False,
        recipe: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Return the artifact for these inputs, building it only if no finished one exists.

        `build(tmp_dir)` writes files into `tmp_dir` and returns summary metrics. With
        `resumable`, the temporary directory has a stable name and survives a failure, so a
        rerun continues from the files a killed run left there (generation appends rows,
        training keeps checkpoints); it still becomes the artifact only when complete.
        `recipe`, the whole recipe of the run that builds it, is kept in the manifest so the
        artifact can be reproduced; it is not hashed (`config` holds what the version depends on).
        """
        version = stable_hash(
            {"asset": asset, "code": code_version, "config": config, "inputs": inputs}
        )
        final = self.directory(asset, partition, version)
        if (final / MANIFEST).is_file():
            self._point_latest(asset, partition, version)
            artifact = read_artifact(final)
            return Artifact(artifact.path, artifact.manifest, reused=True)
        suffix = "partial" if resumable else f"tmp-{uuid.uuid4().hex[:8]}"
        tmp = final.with_name(f".{version}.{suffix}")
        tmp.mkdir(parents=True, exist_ok=resumable)
        try:
            started = time.time()
            metrics = dict(build(tmp))
            checksums = file_checksums(tmp)
            manifest = {
                "asset": asset,
                "partition": partition,
                "version": version,
                "code_version": code_version,
                "config": config,
                **({"recipe": recipe} if recipe is not None else {}),
                "inputs": dict(inputs),
                "metrics": metrics,
                "files": checksums,
                "data_version": stable_hash(checksums),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "build_seconds": round(time.time() - started, 2),
            }
            write_json_atomic(tmp / MANIFEST, manifest)
            if final.exists():  # a concurrent run finished first: keep its result
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
        except BaseException:
            if not resumable:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._point_latest(asset, partition, version)
        return read_artifact(final)

    def _point_latest(self, asset: str, partition: str, version: str) -> None:
        pointer = self.root / asset / partition / "LATEST"
        tmp = pointer.with_name(f".LATEST.{uuid.uuid4().hex[:8]}")
        tmp.write_text(version)
        os.replace(tmp, pointer)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the file and rename over it: a reader never sees half a file."""
    tmp = Path(path).with_name(f".{Path(path).name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(text)
    os.replace(tmp, path)
