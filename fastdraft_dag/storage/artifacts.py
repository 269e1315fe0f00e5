"""Content-addressed artifact directories with manifests and atomic writes.

Each materialization writes `<root>/<asset>/<partition>/<version>/`, where `version` is a hash of
the asset's code version, its config and its inputs' data versions. The directory is built under a
temporary name and renamed into place only when complete, so a failed or killed run never leaves a
half-written artifact and the previous good one stays readable. Because the version is derived
from everything that determines the output, a rerun with nothing changed finds the finished
directory and recomputes nothing.

Crash safety: one builder per artifact version (an exclusive `flock` on
`<root>/.locks/<asset>/<partition>/<version>.lock`, which the kernel releases when its holder
dies, so a killed run never blocks the next one); a reused
artifact is checked against its manifest (sizes always, checksums of what the next step reads,
or of everything with `verify="all"`); a mismatch or an unreadable manifest sets the bad copy
aside as `.<version>.bad-<time>` and rebuilds, instead of failing every later run.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastdraft_dag.core.errors import ConfigError
from fastdraft_dag.core.files import sha256_file, write_json_atomic, write_text_atomic
from fastdraft_dag.core.locks import exclusive_lock
from fastdraft_dag.core.memory import PeakMemory
from fastdraft_dag.core.settings import read_setting

MANIFEST = "manifest.json"
VERIFY_LEVELS = ("sizes", "consumed", "all")
LOW_SPACE_BYTES = 16 << 20  # below this after a failure, the failure is taken as a full disk


class ManifestError(ValueError):
    """A manifest that cannot be read (truncated, not JSON, missing keys); names the file."""


class ArtifactCorruptError(ValueError):
    """An artifact's files differ from its manifest; names the artifact and the files."""


class DiskFullError(OSError):
    """No space left while building an artifact; names the path and the space it needs."""


def stable_hash(obj: Any, length: int = 16) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_checksums(root: Path) -> dict[str, str]:
    return {rel: sha256_file(Path(root) / rel) for rel in file_sizes(root)}


def file_sizes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in sorted(Path(root).rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


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


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`; a truncated or foreign file raises ManifestError naming it."""
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {str(path)!r} is unreadable: {exc}") from exc
    missing = [
        k
        for k in ("version", "files", "data_version")
        if not isinstance(manifest, dict) or k not in manifest
    ]
    if missing:
        raise ManifestError(f"manifest {str(path)!r} lacks {', '.join(missing)}")
    return manifest


def read_artifact(path: Path) -> Artifact:
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"artifact {str(path)!r}: no {MANIFEST} (incomplete or not built)")
    return Artifact(Path(path), read_manifest(manifest_path))


def verify_artifact(
    artifact: Artifact, level: str = "consumed", consumed: Sequence[str] = ()
) -> list[str]:
    """What is wrong with an artifact's files, one line per file ([] when it matches).

    Every file must exist with its recorded size (manifests from before sizes were recorded
    skip that); checksums are compared for files matching `consumed` (glob patterns of what
    the next step reads), or for all files with `level="all"`. Files not in the manifest are
    ignored: they were added after the build and nothing reads them.
    """
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify level {level!r}: expected one of {', '.join(VERIFY_LEVELS)}")
    sizes = artifact.manifest.get("sizes", {})
    problems = []
    for rel, digest in sorted(artifact.manifest["files"].items()):
        path = artifact.path / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif rel in sizes and path.stat().st_size != sizes[rel]:
            problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {sizes[rel]}")
        elif _wants_checksum(rel, level, consumed) and sha256_file(path) != digest:
            problems.append(f"{path}: checksum differs from the manifest")
    return problems


def _wants_checksum(rel: str, level: str, consumed: Sequence[str]) -> bool:
    if level == "all":
        return True
    return level == "consumed" and any(fnmatch.fnmatch(rel, pat) for pat in consumed)


def verify_root(root: Path, level: str = "all") -> dict[str, list[str]]:
    """Every finished artifact under `root` (`<asset>/<partition>/<version>/`) -> its problems."""
    report = {}
    for manifest in sorted(Path(root).glob(f"*/*/*/{MANIFEST}")):
        if manifest.parent.name.startswith("."):
            continue
        try:
            problems = verify_artifact(read_artifact(manifest.parent), level)
        except ManifestError as exc:
            problems = [str(exc)]
        report[str(manifest.parent)] = problems
    return report


def verify_level(value: str = "") -> str:
    """What a reuse checks: `value`, else FASTDRAFT_VERIFY, else "consumed"; checked when the
    Definitions are built, so a typo fails once, not asset by asset with retries."""
    level = value or read_setting("FASTDRAFT_VERIFY")
    if level not in VERIFY_LEVELS:
        raise ConfigError(f"FASTDRAFT_VERIFY={level!r}: expected one of {', '.join(VERIFY_LEVELS)}")
    return level


class ArtifactStore:
    """The artifact root: `<root>/<asset>/<partition>/<version>/` plus a `latest` pointer.

    `verify` is what a reuse checks (VERIFY_LEVELS; `FASTDRAFT_VERIFY`, default "consumed").
    """

    def __init__(self, root: Path, verify: str = "") -> None:
        self.root = Path(root)
        self.verify = verify_level(verify)

    def directory(self, asset: str, partition: str, version: str) -> Path:
        return self.root / asset / partition / version

    def latest(self, asset: str, partition: str) -> Artifact:
        """The newest finished artifact, its files' sizes checked (what a consumer reads)."""
        pointer = self.root / asset / partition / "LATEST"
        if not pointer.is_file():
            raise FileNotFoundError(
                f"asset {asset!r} [{partition}]: never materialized under {self.root}; "
                "materialize it (and its upstream assets) first"
            )
        artifact = read_artifact(self.root / asset / partition / pointer.read_text().strip())
        problems = verify_artifact(artifact, "sizes")
        if problems:
            raise ArtifactCorruptError(
                f"asset {asset!r} [{partition}] at {artifact.path} does not match its manifest "
                f"({'; '.join(problems)}); rematerialize {asset} to rebuild it"
            )
        return artifact

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
        consumed: Sequence[str] = (),
        log: Callable[[str], None] | None = None,
        recipe: Mapping[str, Any] | None = None,
    ) -> Artifact:
        """Return the artifact for these inputs, building it only if no good finished one exists.

        `build(tmp_dir)` writes files into `tmp_dir` and returns summary metrics. With
        `resumable`, the temporary directory has a stable name and survives a failure, so a
        rerun continues from the files a killed run left there (generation appends rows,
        training keeps checkpoints); it still becomes the artifact only when complete. One
        builder at a time holds the version's lock, so two runs never write the same files; the
        second finds the first's result and reuses it. `consumed` (globs) are the files whose
        checksums a reuse checks; `log` hears waits and rebuilds. `recipe`, the whole recipe of
        the run that builds it, is kept in the manifest so the artifact can be reproduced; it is
        not hashed (`config` holds what the version depends on).
        """
        version = stable_hash(
            {"asset": asset, "code": code_version, "config": config, "inputs": inputs}
        )
        final = self.directory(asset, partition, version)
        with exclusive_lock(self.root / ".locks" / asset / partition / f"{version}.lock", log):
            # a builder killed with -9 left its temporary: with the lock held, nobody owns it
            for stale in final.parent.glob(f".{version}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            reused = self._reusable(final, consumed, log)
            if reused is not None:
                self._point_latest(asset, partition, version)
                return reused
            suffix = "partial" if resumable else f"tmp-{uuid.uuid4().hex[:8]}"
            tmp = final.with_name(f".{version}.{suffix}")
            tmp.mkdir(parents=True, exist_ok=resumable)
            try:
                self._build_into(
                    tmp,
                    final,
                    build,
                    asset=asset,
                    partition=partition,
                    version=version,
                    code_version=code_version,
                    config=config,
                    inputs=inputs,
                    recipe=recipe,
                )
            except BaseException as exc:
                full = is_disk_full(exc, tmp.parent)
                error = self._disk_full(asset, partition, tmp, exc) if full else None
                if not resumable:
                    shutil.rmtree(tmp, ignore_errors=True)
                if error is not None:
                    raise error from exc
                raise
        self._point_latest(asset, partition, version)
        return read_artifact(final)

    def _reusable(
        self, final: Path, consumed: Sequence[str], log: Callable[[str], None] | None
    ) -> Artifact | None:
        """The finished artifact if it is sound; a broken one is set aside (and logged)."""
        if not final.exists():
            return None
        try:
            artifact = read_artifact(final)
            problems = verify_artifact(artifact, self.verify, consumed)
        except (ManifestError, FileNotFoundError) as exc:
            problems = [str(exc)]
        if not problems:
            return Artifact(artifact.path, artifact.manifest, reused=True)
        aside = final.with_name(f".{final.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(final, aside)
        if log is not None:
            log(
                f"{final} failed verification ({'; '.join(problems)}); kept aside as "
                f"{aside.name}, rebuilding"
            )
        return None

    def _build_into(
        self,
        tmp: Path,
        final: Path,
        build: Callable[[Path], Mapping[str, Any]],
        *,
        asset: str,
        partition: str,
        version: str,
        code_version: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, str],
        recipe: Mapping[str, Any] | None = None,
    ) -> None:
        started = time.time()
        with PeakMemory() as peak:
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
            "sizes": file_sizes(tmp),
            "data_version": stable_hash(checksums),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "build_seconds": round(time.time() - started, 2),
            "peak_rss_mib": peak.mib,  # the build's process tree (core/memory.py)
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        os.replace(tmp, final)

    def _disk_full(
        self, asset: str, partition: str, tmp: Path, exc: BaseException
    ) -> DiskFullError:
        """ENOSPC (or a C++ stream error on a full disk) as an error naming the path and the need."""
        free = shutil.disk_usage(tmp.parent).free / 2**20
        wrote = sum(file_sizes(tmp).values()) / 2**20 if tmp.exists() else 0.0
        need = f"more than the {wrote:.1f} MiB it wrote" if wrote else "more than is free"
        try:
            last = self.latest(asset, partition).manifest.get("sizes", {})
            need = f"about {sum(last.values()) / 2**20:.1f} MiB (its last build's size)"
        except (OSError, ValueError):
            pass  # never built: what it wrote is the best estimate
        return DiskFullError(
            errno.ENOSPC,
            f"no space left building {asset} [{partition}] in {tmp.parent}: {free:.1f} MiB "
            f"free, it needs {need} ({type(exc).__name__}: {exc})",
            str(tmp),
        )

    def _point_latest(self, asset: str, partition: str, version: str) -> None:
        write_text_atomic(self.root / asset / partition / "LATEST", version)


def is_disk_full(exc: BaseException, where: Path) -> bool:
    """ENOSPC, or any failure (OpenVINO's C++ writers say `basic_ios::clear`) on a near-full disk."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if not isinstance(exc, Exception) or not where.exists():
        return False
    return "No space left" in str(exc) or shutil.disk_usage(where).free < LOW_SPACE_BYTES
