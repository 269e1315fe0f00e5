"""Training an EAGLE-3 head through the real trainer: the loss falls, kill -9 resumes exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from training_fixtures import (
    REPO,
    VOCAB,
    assert_same_run,
    entry_command,
    start_trainer,
    train_rows,
    wait_for,
    write_sft,
)

from fastdraft_dag.draft.eagle3 import init_head, is_eagle3_dir, load_head, save_head, tap_record
from fastdraft_dag.training.checkpoint import latest_checkpoint
from fastdraft_dag.training.eagle3 import step_weights
from fastdraft_dag.training.spec import TrainSpec
from fastdraft_dag.training.trainer import fingerprint

STEPS = 16


@pytest.fixture(scope="module")
def head_ws(tiny_target_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eagle3-train")
    head = init_head(tiny_target_dir, list(range(VOCAB)), seed=0)
    save_head(head, root / "init", tiny_target_dir, tap_record([0, 1, 2], 3))
    return {"init": root / "init", "sft": write_sft(root / "sft.npz"), "target": tiny_target_dir}


def head_spec(ws: dict[str, Path], out: Path, loss: str = "fkl", **extra) -> dict:
    return {
        "backend": "cpu", "init_dir": str(ws["init"]), "out_dir": str(out), "threads": 1,
        "dtype": "fp32", "seed": 0, "teacher_dir": str(ws["target"]), "ttt_steps": 3,
        "ttt_decay": 0.8, "checkpoint_every": 4,
        "stages": [{"name": "eagle3", "steps": STEPS, "batch_size": 8, "lr": 3e-3,
                    "warmup_steps": 2, "eval_batches": 2, "loss": loss,
                    "data": {"kind": "sft", "path": str(ws["sft"])}}],
        **extra,
    }  # fmt: skip


def _run(spec: dict, tmp: Path, name: str = "spec.json") -> subprocess.CompletedProcess:
    (tmp / name).write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(entry_command(tmp / name), cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def reference(head_ws: dict[str, Path], tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("eagle3-ref")
    out = tmp / "head"
    result = _run(head_spec(head_ws, out), tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_head_trains_and_saves_a_head(reference: Path) -> None:
    rows = train_rows(reference)
    assert len(rows) == STEPS
    first, last = rows[0]["loss"], sum(r["loss"] for r in rows[-4:]) / 4
    assert last < 0.8 * first, (first, last)
    assert is_eagle3_dir(reference) and (reference / "eagle3_layers.json").is_file()
    head = load_head(reference)
    assert head.kept_ids.tolist() == list(range(VOCAB))
    assert json.loads((reference / "metrics.json").read_text())["val_loss"] > 0


def test_resume_after_kill_9_is_exact(head_ws: dict[str, Path], reference: Path, tmp_path: Path):
    out = tmp_path / "head"
    proc = start_trainer(head_spec(head_ws, out), tmp_path)
    ckpts = out / "_checkpoints"
    wait_for(lambda: (ckpts / "LATEST").is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = latest_checkpoint(ckpts)
    assert killed_at is not None and killed_at.global_step < STEPS
    rerun = _run(head_spec(head_ws, out), tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from step-{killed_at.global_step:08d}" in rerun.stdout
    assert_same_run(out, reference, rtol=1e-5)


def test_unroll_settings_are_part_of_the_fingerprint(head_ws: dict[str, Path], tmp_path: Path):
    a = TrainSpec.from_dict(head_spec(head_ws, tmp_path))
    b = TrainSpec.from_dict(head_spec(head_ws, tmp_path, ttt_steps=5))
    assert fingerprint(a) != fingerprint(b)
    assert step_weights(3, 0.5) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_head_without_teacher_is_refused(head_ws: dict[str, Path], tmp_path: Path) -> None:
    result = _run(head_spec(head_ws, tmp_path / "o", teacher_dir=""), tmp_path)
    assert result.returncode != 0 and "teacher_dir" in result.stderr


def test_hpu_routes_heads_to_the_loop_on_one_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """GaudiTrainer's model-forward loss cannot run the target in the loop: a head trains on
    the native loop on one HPU (eager mode); the standalone draft keeps GaudiTrainer."""
    from fastdraft_dag.training.distributed import World
    from fastdraft_dag.training.errors import TrainingError
    from fastdraft_dag.training.trainer import gaudi_trainer_runs

    monkeypatch.delenv("PT_HPU_LAZY_MODE", raising=False)
    from fastdraft_dag.training.spec import Stage

    draft = TrainSpec("init", "out", (Stage(name="s", data={}, steps=1, batch_size=8, lr=1e-3),))
    head = dataclasses.replace(draft, teacher_dir="target")
    assert gaudi_trainer_runs(draft, "hpu", World()) is True
    assert gaudi_trainer_runs(draft, "cuda", World()) is False
    assert "PT_HPU_LAZY_MODE" not in os.environ
    assert gaudi_trainer_runs(head, "hpu", World()) is False
    assert os.environ["PT_HPU_LAZY_MODE"] == "0"
    with pytest.raises(TrainingError, match="FASTDRAFT_HPU_DEVICES=1"):
        gaudi_trainer_runs(head, "hpu", World(rank=0, size=8))


def test_head_trains_on_kd_rows_mixed_with_corpus_features(head_ws, tmp_path: Path) -> None:
    """The corpus option: packed corpus rows (the target's features over text it did not
    generate) mixed into the head's KD rows, both kinds in one seeded plan."""
    from training_fixtures import write_shards

    from fastdraft_dag.distill.align import data_spec
    from fastdraft_dag.distill.eagle3 import Corpus, head_data

    corpus = Corpus(write_shards(tmp_path / "shards"), share=0.5, mix={"text": 1.0})
    parts = head_data(head_ws["sft"], corpus)
    assert [(p["name"], p["weight"]) for p in parts] == [("kd", 0.5), ("corpus", 0.5)]
    assert head_data(head_ws["sft"], None) == [{**parts[0], "weight": 1.0}]
    spec = head_spec(head_ws, tmp_path / "head")
    spec["stages"][0] |= {"steps": 6, "data": data_spec(parts)}
    result = _run(spec, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = train_rows(tmp_path / "head")
    assert len(rows) == 6 and all(r["loss"] > 0 for r in rows)
    with pytest.raises(ValueError, match="corpus share 1.0"):
        head_data(head_ws["sft"], Corpus(tmp_path, share=1.0, mix={}))
