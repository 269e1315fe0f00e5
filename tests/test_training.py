"""The trainer: backend choice, launch commands, loss masking, faults, and real tiny runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from fastdraft_dag import shards
from fastdraft_dag.draft_config import DraftSize, init_draft
from fastdraft_dag.resources.hpu_training import HPUTrainingResource, build_command
from fastdraft_dag.training import backends, loop

VOCAB, SEQ_LEN = 512, 64
REPO = Path(__file__).resolve().parents[1]


def write_small_target(root: Path) -> Path:
    """A word-level tokenizer + config: the draft's vocabulary source, 512 tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    root.mkdir(parents=True, exist_ok=True)
    words = ["<unk>", "<s>", "</s>", *[f"w{i}" for i in range(3, VOCAB)]]
    Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")).save(
        str(root / "tokenizer.json")
    )
    (root / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>"})
    )
    config = {"model_type": "llama", "vocab_size": VOCAB, "bos_token_id": 1, "eos_token_id": 2,
              "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}}  # fmt: skip
    (root / "config.json").write_text(json.dumps(config))
    return root


def markov_sequences(rng: np.random.Generator, n: int, mult: int) -> np.ndarray:
    """Mostly-deterministic token chains: learnable in a few steps, so the loss must fall."""
    seqs = np.empty((n, SEQ_LEN), dtype=np.uint16)
    seqs[:, 0] = rng.integers(3, VOCAB, size=n)
    for t in range(1, SEQ_LEN):
        nxt = 3 + ((seqs[:, t - 1].astype(np.int64) - 3) * mult + 1) % (VOCAB - 3)
        noise = rng.random(n) < 0.1
        seqs[:, t] = np.where(noise, rng.integers(3, VOCAB, size=n), nxt)
    return seqs


def write_shards(root: Path) -> Path:
    rng = np.random.default_rng(0)
    entries = [
        shards.write_shard(root, domain, split, 0, markov_sequences(rng, n, mult))
        for domain, mult in (("text", 7), ("code", 11))
        for split, n in (("train", 256), ("validation", 32))
    ]
    shards.write_index(root, {"seq_len": SEQ_LEN, "dtype": "<u2", "eos_id": 2,
                              "vocab_size": VOCAB, "shards": entries, "tokens": {}})  # fmt: skip
    return root


def write_sft(path: Path, n: int = 64) -> Path:
    """Noise prompts (masked) + a response that copies the prompt's last token, right-padded."""
    rng = np.random.default_rng(1)
    arrays = {}
    for split, rows in (("train", n), ("val", 16)):
        ids = np.full((rows, 32), 2, dtype=np.int32)
        labels = np.full((rows, 32), -100, dtype=np.int64)
        mask = np.zeros((rows, 32), dtype=np.int64)
        for r in range(rows):
            p, a = int(rng.integers(4, 12)), int(rng.integers(4, 12))
            prompt = rng.integers(3, VOCAB, size=p)
            ids[r, : p + a] = np.concatenate([prompt, np.full(a, prompt[-1])])
            labels[r, p : p + a] = ids[r, p : p + a]
            mask[r, : p + a] = 1
        arrays |= {f"{split}_input_ids": ids, f"{split}_labels": labels,
                   f"{split}_attention_mask": mask}  # fmt: skip
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("training")
    target = write_small_target(root / "target")
    init_draft(target, DraftSize(64, 2, 4, 2, 128, max_position_embeddings=128), root / "init")
    return {"root": root, "init": root / "init", "shards": write_shards(root / "shards"),
            "sft": write_sft(root / "sft.npz")}  # fmt: skip


def make_spec(ws: dict[str, Path], out: Path, pretrain_steps: int = 30) -> dict:
    common = {"batch_size": 8, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 3, "eval_batches": 2}
    return {
        "backend": "cpu", "init_dir": str(ws["init"]), "out_dir": str(out), "threads": 1,
        "dtype": "fp32", "seed": 0,
        "stages": [
            {"name": "pretrain", "steps": pretrain_steps, "eval_every": 10, **common,
             "data": {"kind": "packed", "root": str(ws["shards"]), "mix": {"text": 1.0}}},
            {"name": "continued", "steps": 10, **common,
             "data": {"kind": "packed", "root": str(ws["shards"]),
                      "mix": {"code": 0.5, "text": 0.5}}},
            {"name": "align", "steps": 10, **common,
             "data": {"kind": "sft", "path": str(ws["sft"])}},
        ],
    }  # fmt: skip


# ----------------------------------------------------------------------------- backends


def test_gaudi_absent_machine_picks_cpu_and_refuses_hpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "habana_available", lambda: False)
    monkeypatch.setattr(backends, "cuda_available", lambda: False)
    assert backends.detect_backend() == "cpu"
    assert backends.resolve_backend("auto") == "cpu"
    for requested in ("hpu", "cuda"):
        with pytest.raises(backends.BackendUnavailableError, match=f"'{requested}' requested"):
            backends.resolve_backend(requested)
    with pytest.raises(ValueError, match="'tpu'"):
        backends.resolve_backend("tpu")


def test_simulated_gaudi_machine_picks_hpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "habana_available", lambda: True)
    assert backends.resolve_backend("auto") == "hpu"
    assert backends.resolve_backend("hpu") == "hpu"
    assert backends.resolve_backend("cpu") == "cpu"


def test_real_probe_on_this_machine() -> None:
    assert backends.habana_available() is False  # import errors of any kind mean "absent"
    assert backends.device_for("cpu") == torch.device("cpu")


def test_resource_refuses_hpu_before_launch(tmp_path: Path) -> None:
    resource = HPUTrainingResource(backend="hpu")
    with pytest.raises(backends.BackendUnavailableError, match="'hpu' requested"):
        resource.train(context=None, spec={"out_dir": str(tmp_path / "o")}, work_dir=tmp_path)
    assert not (tmp_path / "train_spec.json").exists()


def test_build_command() -> None:
    spec = Path("/w/spec.json")
    single = build_command("/py", "cpu", 1, spec)
    assert single == ["/py", "-m", "fastdraft_dag.training.run", "--spec", "/w/spec.json"]
    torchrun = build_command("/py", "cpu", 4, spec)
    assert torchrun[:3] == ["/py", "-m", "torch.distributed.run"]
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == "4"
    assert torchrun[-4:] == ["-m", "fastdraft_dag.training.run", "--spec", "/w/spec.json"]
    gaudi = build_command("/gaudi/py", "hpu", 8, spec)
    assert gaudi[:3] == ["/gaudi/py", "-m", "optimum.habana.distributed.gaudi_spawn"]
    assert gaudi[gaudi.index("--world_size") + 1] == "8" and "--use_deepspeed" in gaudi
    assert gaudi[-3].endswith("fastdraft_dag/training/run.py")
    with pytest.raises(ValueError, match="num_devices=0"):
        build_command("/py", "cpu", 0, spec)


# ----------------------------------------------------------------------------- loop pieces


def test_lr_schedule_warmup_then_cosine_to_min() -> None:
    stage = loop.Stage(name="s", data={}, steps=20, lr=1.0, min_lr=0.1, warmup_steps=4)
    lrs = [loop.lr_at(s, stage) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))


def test_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[str] = []
    monkeypatch.setattr(loop, "bf16_native", lambda backend: False)
    assert loop.use_bf16("cpu", "bf16", logged.append) is False
    assert "no native bf16" in logged[0]
    monkeypatch.setattr(loop, "bf16_native", lambda backend: True)
    assert loop.use_bf16("cpu", "bf16", logged.append) is True
    assert loop.use_bf16("cpu", "fp32", logged.append) is False


def test_unknown_stage_key_refused() -> None:
    with pytest.raises(loop.TrainingError, match="warmup"):
        loop.Stage.from_dict({"name": "s", "data": {}, "warmup": 20})


def test_sft_loss_only_on_unmasked_tokens(workspace: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace["init"]).eval()
    data = loop.SftData(str(workspace["sft"]))
    batch = data.sample(np.random.default_rng(0), 4)
    with torch.no_grad():
        loss = loop.batch_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none"
    )
    keep = batch["labels"][:, 1:] != -100
    assert 0 < keep.sum() < keep.numel()
    assert loss.item() == pytest.approx(per_token[keep].mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(per_token.mean().item(), rel=1e-3)


# ----------------------------------------------------------------------------- runs


def test_tiny_three_stage_run_via_entry_point(workspace: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "draft"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(make_spec(workspace, out)))
    proc = subprocess.run(
        [sys.executable, "-m", "fastdraft_dag.training.run", "--spec", str(spec_path)],
        capture_output=True, text=True, cwd=REPO, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretrain step 30/30" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    pretrain, continued, align = metrics["stages"]
    assert pretrain["train_loss"] < pretrain["first_train_loss"] - 1.0
    assert continued["val_loss"] < np.log(VOCAB)
    assert align["val_loss"] is not None and align["tokens"] > 0
    assert metrics["tokens_per_s"] > 0 and metrics["parameters"] > 0
    assert metrics["bf16_autocast"] is False  # fp32 requested
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"pretrain", "continued", "align"}
    assert all(
        {"step", "loss", "lr", "tokens_per_s"} <= set(r) for r in rows if r["kind"] == "train"
    )
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == VOCAB
    assert AutoTokenizer.from_pretrained(out)("w5").input_ids == [5]


def test_corrupted_shard_refused_before_training(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    bad = shutil.copytree(workspace["shards"], tmp_path / "shards")
    shard = bad / "text" / "train-00000.bin"
    raw = bytearray(shard.read_bytes())
    raw[100] ^= 0xFF
    shard.write_bytes(bytes(raw))
    spec = make_spec({**workspace, "shards": bad}, tmp_path / "out")
    with pytest.raises(shards.ShardChecksumError, match="text/train-00000.bin"):
        loop.train(spec, log=lambda m: None, report=lambda p: None)
    assert not (tmp_path / "out").exists()  # refused before the model was even loaded


def test_nan_loss_stops_with_step(workspace: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace["init"])
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan-init")
    spec = make_spec({**workspace, "init": tmp_path / "nan-init"}, tmp_path / "out")
    with pytest.raises(loop.TrainingError, match="stage 'pretrain' step 1: loss is nan"):
        loop.train(spec, log=lambda m: None, report=lambda p: None)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_entry_point_exits_nonzero_with_message(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"init_dir": "x", "out_dir": "y", "stages": [{"name": "s"}]}))
    proc = subprocess.run(
        [sys.executable, "-m", "fastdraft_dag.training.run", "--spec", str(spec_path)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "training failed: stage" in proc.stderr and "'data'" in proc.stderr


def test_resource_trains_through_pipes_in_materialize(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    spec = make_spec(workspace, tmp_path / "draft", pretrain_steps=10)

    @dg.asset
    def tiny_draft(context, trainer: HPUTrainingResource) -> dg.MaterializeResult:
        metrics = trainer.train(context, spec, tmp_path / "work")
        return dg.MaterializeResult(metadata={"val_loss": metrics["val_loss"]})

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [tiny_draft], resources={"trainer": HPUTrainingResource(threads=1)}, instance=instance
    )
    assert result.success
    mat = result.asset_materializations_for_node("tiny_draft")[0]
    assert mat.metadata["val_loss"].value > 0
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("pretrain step 10/10" in m for m in messages), messages[-20:]
    assert any("training " in m and "parameters on cpu" in m for m in messages)
    assert json.loads((tmp_path / "work" / "train_spec.json").read_text())["backend"] == "cpu"
