"""Fault injection through the real CLI: each fault as a user's machine would see it.

Every case runs `fastdraft run --profile tiny` in subprocesses on a copy of one artifact root
built once for the module, injects a fault (kill -9 mid-training, two concurrent runs, a
corrupted shard, a truncated manifest, a full disk) and checks that a plain rerun recovers with
no manual step, or that the error names the thing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from fastdraft_dag.storage.artifacts import read_artifact

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAINER = "fastdraft_dag.training.run"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FASTDRAFT_"))}
    return {**env, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **extra}


def _cmd(root: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fastdraft_dag.cli",
        *args,
        "--profile",
        "tiny",
        "--root",
        str(root),
    ]


def _run(root: Path, *args: str, timeout: float = 420, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _cmd(root, *args), env=_env(**env), capture_output=True, text=True, timeout=timeout
    )


def _copy_root(base: Path, dst: Path, drop: Sequence[str] = ()) -> Path:
    """A private copy of the built root; the converted targets are hard links (read only)."""
    shutil.copytree(base, dst, ignore=shutil.ignore_patterns(*drop, "targets", ".locks"))
    shutil.copytree(base / "targets", dst / "targets", copy_function=os.link)
    return dst


def _trainers(root: Path) -> list[int]:
    """Pids of trainer processes working under `root`."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if TRAINER in cmdline and str(root) in cmdline:
            pids.append(int(proc.name))
    return pids


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The whole tiny graph, built once (about 1.5 min on 2 cores)."""
    root = tmp_path_factory.mktemp("faults") / "base"
    done = _run(root, "run", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_kill_9_mid_training_then_a_plain_rerun_completes_with_no_orphan(built, tmp_path):
    """The killed run held the hpu slot; without a daemon nothing freed it and the rerun hung."""
    root = _copy_root(built, tmp_path / "root", drop=["pretrained_draft"])
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # pools, as `make run` sets up
    env = {"DAGSTER_HOME": str(home), "FASTDRAFT_CHECKPOINT_EVERY": "1"}
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        _cmd(root, "run", "--select", "pretrained_draft"), env=_env(**env), stdout=log, stderr=log
    )
    checkpoints = root / "pretrained_draft" / "tiny-random"
    _wait_for(lambda: list(checkpoints.glob(".*.partial/_checkpoints/LATEST")), 300, "a checkpoint")
    trainers = _trainers(root)
    assert trainers, "no trainer process found mid-training"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not _trainers(root), 30, f"orphaned trainers {trainers} to exit")
    assert not (checkpoints / "LATEST").exists()  # what a killed run leaves: its checkpoints
    # An orphan would have trained on to the end and written its metrics into the partial dir.
    assert not list(checkpoints.glob(".*.partial/metrics.json"))
    assert list(checkpoints.glob(".*.partial/_checkpoints/step-*"))

    rerun = _run(root, "run", "--select", "pretrained_draft", timeout=300, **env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "marked failed" in rerun.stderr and "slots freed" in rerun.stderr
    assert "resuming from step-" in rerun.stderr  # the killed run's checkpoints were used
    assert read_artifact(_latest(root, "pretrained_draft")).metrics["stages"]
    assert not _trainers(root)


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (the pool workers of a run)."""
    kids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(proc.name))
    return kids


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_kill_9_during_filtering_leaves_no_worker_and_no_held_lock(built, tmp_path):
    """The corpus pool's workers used to be forked: they outlived a killed run and kept its
    build lock, and the rerun waited forever on the dead pid. Spawned workers die with it."""
    root = _copy_root(built, tmp_path / "root", drop=["filtered_corpora"])
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        _cmd(root, "run", "--select", "filtered_corpora"), env=_env(), stdout=log, stderr=log
    )
    _wait_for(lambda: len(_children(proc.pid)) >= 2, 300, "the filter pool's workers")
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _wait_for(lambda: not _alive(workers), 30, f"workers {workers} to die with the run")
    rerun = _run(root, "run", "--select", "filtered_corpora", timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert read_artifact(_latest(root, "filtered_corpora")).metrics


def test_two_concurrent_runs_without_dagster_home_give_each_kd_id_once(built, tmp_path):
    root = _copy_root(built, tmp_path / "root", drop=["synthetic_kd_dataset"])
    cmd = _cmd(root, "run", "--select", "synthetic_kd_dataset")
    procs = [
        subprocess.Popen(
            cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=420)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outs]
    art = read_artifact(_latest(root, "synthetic_kd_dataset"))
    ids = [json.loads(line)["id"] for line in (art.path / "kd.jsonl").read_text().splitlines()]
    assert ids and len(ids) == len(set(ids))
    assert art.metrics["rows_in_file"] == len(ids)
    partials = list((root / "synthetic_kd_dataset" / "tiny-random").glob(".*.partial"))
    assert partials == []  # one builder finished; the other reused its result


LONGER_KD = """base: tiny
kd: {n_instruction: 120, n_code: 120, max_new_tokens: 96}
"""


def test_ctrl_c_during_kd_generation_stops_the_run_and_a_rerun_resumes(built, tmp_path):
    """Dagster turned Ctrl-C inside the KD step (which has a retry policy) into a retry, and the
    OpenVINO backend only saw it after a whole chunk: the run went on and exited 0."""
    root = _copy_root(built, tmp_path / "root")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(LONGER_KD)
    cmd = [*_cmd(root, "run", "--select", "synthetic_kd_dataset"), "--config", str(recipe)]
    log = open(tmp_path / "interrupted.log", "w+")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=log, start_new_session=True)
    part = root / "synthetic_kd_dataset" / "tiny-random"
    rows = lambda: [f for f in part.glob(".*.partial/kd.jsonl") if f.stat().st_size]  # noqa: E731
    _wait_for(lambda: rows() or proc.poll() is not None, 300, "the first KD rows")
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole group
    assert proc.wait(timeout=60) == 130
    log.seek(0)
    out = log.read()
    assert "run interrupted (Ctrl-C or cancel)" in out and "STEP_UP_FOR_RETRY" not in out
    kept = len(rows()[0].read_text().splitlines())  # still a partial: nothing was published

    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=420)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = read_artifact(_latest(root, "synthetic_kd_dataset")).metrics
    assert metrics["skipped_existing"] == kept > 0  # the rows written before Ctrl-C were kept


def test_corrupted_shard_and_truncated_manifest_are_detected_on_reuse_and_rebuilt(built, tmp_path):
    root = _copy_root(built, tmp_path / "root")
    shards = read_artifact(_latest(root, "tokenized_shards"))
    shard = next(p for p in sorted(shards.path.rglob("*.bin")))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only a checksum sees it
    shard.write_bytes(bytes(data))
    manifest = _latest(root, "filtered_corpora") / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])

    found = subprocess.run(
        _cmd(root, "artifacts", "verify"), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert found.returncode == 1
    assert str(shard) in found.stdout and str(manifest) in found.stdout

    rerun = _run(root, "run")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{shard}: checksum differs" in rerun.stderr and str(manifest) in rerun.stderr
    assert list(shards.path.parent.glob(f".{shards.path.name}.bad-*"))
    assert list(manifest.parent.parent.glob(f".{manifest.parent.name}.bad-*"))
    ok = subprocess.run(
        _cmd(root, "artifacts", "verify"), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stdout[-2000:]


def test_report_on_a_broken_benchmark_or_a_typo_partition_names_it(built, tmp_path):
    root = _copy_root(built, tmp_path / "root")
    typo = _run(root, "report", "--partition", "tiny-randon")
    assert typo.returncode == 2 and "tiny-randon" in typo.stderr and "tiny-random" in typo.stderr
    results = _latest(root, "benchmark_tables") / "results.json"
    results.write_text(results.read_text()[:50])
    broken = _run(root, "report")
    assert broken.returncode == 2, broken.stdout[-2000:]
    assert "benchmark_tables [tiny-random]" in broken.stderr and "Traceback" not in broken.stderr


def _latest(root: Path, asset: str) -> Path:
    part = root / asset / ("shared" if asset == "filtered_corpora" else "tiny-random")
    return part / (part / "LATEST").read_text().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_during_export_names_the_path(built, tmp_path):
    root = _copy_root(built, tmp_path / "root", drop=["openvino_ir", "benchmark_tables"])
    small = root / "openvino_ir"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        full = _run(root, "run", "--select", "openvino_ir", timeout=300)
    finally:
        subprocess.run(["umount", "-l", str(small)])
    assert full.returncode == 1
    assert f"no space left building openvino_ir [tiny-random] in {small / 'tiny-random'}" in (
        full.stderr + full.stdout
    )
    assert "MiB free, it needs" in full.stderr + full.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_while_converting_the_embedded_target_names_folder_and_sizes(tmp_path):
    """It was a raw "os error 28" with no path, and the CLI said only "observing ... failed"."""
    targets = tmp_path / "root" / "targets"
    targets.mkdir(parents=True)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(targets)]
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        cmd = [*_cmd(tmp_path / "root", "run"), "--profile", "default"]  # the embedded target
        full = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        left = list((targets / "embedded").iterdir())
    finally:
        subprocess.run(["umount", "-l", str(targets)])
    assert full.returncode == 1
    line = next(x for x in full.stderr.splitlines() if x.startswith("observing target_model"))
    assert (
        f"no space left converting SmolLM2-135M-Instruct.Q4_1.gguf into {targets / 'embedded'}"
        in line
    )
    assert "MiB free, the converted model needs about" in line and "os error 28" in line
    assert left == []  # the half-written conversion was removed
