"""The trainer: backends, launch commands, the fused loss, and real tiny runs (1 and 2 processes,
resume after kill -9 and SIGTERM, NaN / exploding loss, out of memory, corrupted shards)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch
from training_fixtures import (
    REPO,
    VOCAB,
    assert_same_run,
    entry_command,
    make_spec,
    start_trainer,
    train_rows,
    wait_for,
    write_sft,
    write_shards,
    write_small_target,
)

from fastdraft_dag.core import shards
from fastdraft_dag.draft.config import DraftSize, init_draft
from fastdraft_dag.reporting.model_card import write_model_card
from fastdraft_dag.resources.hpu_training import GAUDI_SPAWN, HPUTrainingResource, build_command
from fastdraft_dag.training import backends, gaudi, loop, throughput, trainer
from fastdraft_dag.training.checkpoint import latest_checkpoint
from fastdraft_dag.training.config import StageConfig
from fastdraft_dag.training.data import PackedData, SftData
from fastdraft_dag.training.losses import CausalLMLoss, batch_loss
from fastdraft_dag.training.spec import TrainSpec, build_spec


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("training")
    target = write_small_target(root / "target")
    init_draft(target, DraftSize(64, 2, 4, 2, 128, max_position_embeddings=128), root / "init")
    return {"root": root, "init": root / "init", "shards": write_shards(root / "shards"),
            "sft": write_sft(root / "sft.npz")}  # fmt: skip


def resume_spec(ws: dict[str, Path], out: Path, **top) -> dict:
    """Two stages, gradient accumulation and a checkpoint every 6 steps: the comparison run."""
    common = {"batch_size": 8, "grad_accum": 2, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 3,
              "eval_batches": 2}  # fmt: skip
    return {
        "backend": "cpu", "init_dir": str(ws["init"]), "out_dir": str(out), "threads": 1,
        "dtype": "fp32", "seed": 0, "checkpoint_every": 6, **top,
        "stages": [
            {"name": "pretrain", "steps": 24, **common,
             "data": {"kind": "packed", "root": str(ws["shards"]),
                      "mix": {"code": 0.5, "text": 0.5}}},
            {"name": "align", "steps": 8, **common,
             "data": {"kind": "sft", "path": str(ws["sft"])}},
        ],
    }  # fmt: skip


@pytest.fixture(scope="module")
def reference(workspace: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted single-process run every resumed / 2-process run is compared with."""
    out = tmp_path_factory.mktemp("reference") / "draft"
    trainer.train(resume_spec(workspace, out), log=lambda m: None, report=lambda p: None)
    return out


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


def test_hpu_requested_on_this_machine_is_refused_not_run_on_cpu(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    spec = {**make_spec(workspace, tmp_path / "out"), "backend": "hpu"}
    with pytest.raises(backends.BackendUnavailableError, match="refusing to fall back to the CPU"):
        trainer.train(spec, log=lambda m: None, report=lambda p: None)
    assert not (tmp_path / "out").exists()


def test_simulated_gaudi_without_optimum_habana_names_the_requirements(
    workspace: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backends, "habana_available", lambda: True)
    spec = {**make_spec(workspace, tmp_path / "out"), "backend": "hpu"}
    with pytest.raises(loop.TrainingError, match=r"optimum-habana .*requirements/gaudi.txt"):
        trainer.train(spec, log=lambda m: None, report=lambda p: None)


def test_resource_refuses_hpu_before_launch(tmp_path: Path) -> None:
    resource_ = HPUTrainingResource(backend="hpu")
    with pytest.raises(backends.BackendUnavailableError, match="'hpu' requested"):
        stage = loop.Stage(name="s", data={}, steps=1, batch_size=8, lr=1e-3)
        resource_.train(
            context=None, spec=TrainSpec("i", str(tmp_path / "o"), (stage,)), work_dir=tmp_path
        )
    assert not (tmp_path / "train_spec.json").exists()


def test_build_command() -> None:
    spec = Path("/w/spec.json")
    single = build_command("/py", "cpu", 1, spec)
    assert single == ["/py", "-m", "fastdraft_dag.training.run", "--spec", "/w/spec.json"]
    torchrun = build_command("/py", "cpu", 4, spec)
    assert torchrun[:3] == ["/py", "-m", "torch.distributed.run"]
    assert torchrun[torchrun.index("--nproc_per_node") + 1] == "4"
    assert torchrun[-4:] == ["-m", "fastdraft_dag.training.run", "--spec", "/w/spec.json"]
    gaudi_cmd = build_command("/gaudi/py", "hpu", 8, spec)
    assert gaudi_cmd[:3] == ["/gaudi/py", "-m", GAUDI_SPAWN]
    assert gaudi_cmd[gaudi_cmd.index("--world_size") + 1] == "8"
    assert "--use_deepspeed" in gaudi_cmd
    assert gaudi_cmd[-3].endswith("fastdraft_dag/training/run.py")
    with pytest.raises(ValueError, match="num_devices=0"):
        build_command("/py", "cpu", 0, spec)


def test_gaudi_spawn_passes_the_script_and_its_arguments_through() -> None:
    from fastdraft_dag.training.gaudi_spawn import parse_args

    args = parse_args(["--world_size", "8", "--use_deepspeed", "/x/run.py", "--spec", "s.json"])
    assert (args.world_size, args.use_deepspeed) == (8, True)
    assert (args.training_script, args.training_script_args) == ("/x/run.py", ["--spec", "s.json"])


def test_resource_settings_reach_the_spec_and_env() -> None:
    res = HPUTrainingResource(num_devices=2, threads=2, checkpoint_every=7, peak_tflops=1.5)
    overrides = res.spec_overrides("cpu")
    assert overrides["threads"] == 1 and overrides["checkpoint_every"] == 7
    assert overrides["peak_flops"] == 1.5e12
    assert res.subprocess_env("cpu")["OMP_NUM_THREADS"] == "1"  # 2 processes share 2 cores


def test_resource_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pod = tmp_path / "pod.json"
    pod.write_text(json.dumps({"containers": [{"resources": {"limits": {"habana.ai/gaudi": 8}}}]}))
    for key, value in {"BACKEND": "hpu", "DEVICES": "8", "PYTHON": "/opt/g/bin/python",
                       "LAUNCHER": "k8s"}.items():  # fmt: skip
        monkeypatch.setenv(f"FASTDRAFT_HPU_{key}", value)
    monkeypatch.setenv("FASTDRAFT_K8S_POD_SPEC", str(pod))
    res = HPUTrainingResource.from_env(threads=4)
    assert (res.backend, res.num_devices, res.python, res.launcher) == (
        "hpu",
        8,
        "/opt/g/bin/python",
        "k8s",
    )
    assert res.k8s_pod_spec["containers"][0]["resources"]["limits"]["habana.ai/gaudi"] == 8
    assert res.checkpoint_every == 50 and res.threads == 4


def test_k8s_launcher_builds_the_pod_run_without_probing() -> None:
    pod = {"containers": [{"name": "trainer", "resources": {"limits": {"habana.ai/gaudi": 8}}}]}
    res = HPUTrainingResource(
        backend="hpu", num_devices=8, launcher="k8s", k8s_image="reg/fastdraft-gaudi:1",
        k8s_namespace="ml", k8s_pod_spec=pod,
    )  # fmt: skip
    assert res.resolved_backend() == "hpu"  # decided inside the pod, not on this CPU box
    command = build_command(res.python, "hpu", 8, Path("/artifacts/w/spec.json"))
    kwargs = res.k8s_run_kwargs(command, res.subprocess_env("hpu"))
    assert kwargs["image"] == "reg/fastdraft-gaudi:1" and kwargs["namespace"] == "ml"
    assert kwargs["command"][:3] == ["python", "-m", GAUDI_SPAWN]
    assert kwargs["base_pod_spec"] == pod and "PYTHONPATH" not in kwargs["env"]
    with pytest.raises(ValueError, match="k8s_image"):
        HPUTrainingResource(launcher="k8s").k8s_run_kwargs(command, {})


def test_gaudi_trainer_arguments_and_zero_config() -> None:
    stage = loop.Stage(name="pretrain", data={}, steps=100, batch_size=64, grad_accum=2,
                       lr=1e-3, min_lr=1e-4, warmup_steps=10, eval_every=50)  # fmt: skip
    spec = TrainSpec("i", "o", (stage,), dtype="bf16", checkpoint_every=25)
    args = gaudi.gaudi_arguments(spec, stage, Path("/c/0-pretrain"), 8, Path("/tb"))
    assert args["per_device_train_batch_size"] == 8 and args["gradient_accumulation_steps"] == 2
    assert args["use_habana"] and args["use_lazy_mode"] and args["bf16"]
    assert args["lr_scheduler_type"] == "cosine_with_min_lr"
    assert args["lr_scheduler_kwargs"] == {"min_lr": 1e-4} and args["save_steps"] == 25
    assert args["deepspeed"]["zero_optimization"]["stage"] == 2
    assert gaudi.gaudi_arguments(spec, stage, Path("/c"), 1, Path("/tb"))["deepspeed"] is None
    with pytest.raises(loop.TrainingError, match="does not split over 3 devices"):
        gaudi.gaudi_arguments(spec, stage, Path("/c"), 3, Path("/tb"))


def test_gaudi_dataset_rows_do_not_depend_on_order(workspace: dict[str, Path]) -> None:
    data = PackedData(str(workspace["shards"]), {"text": 0.5, "code": 0.5})
    ds = gaudi.PlanDataset(data, rows=32, seed=0, stage_index=1)
    assert torch.equal(ds[5]["input_ids"], ds[5]["input_ids"])
    assert not torch.equal(ds[5]["input_ids"], ds[6]["input_ids"])
    assert len(ds) == 32 and ds[0]["input_ids"].shape == (64,)


# ----------------------------------------------------------------------------- loop pieces


def test_trainer_stage_and_recipe_stage_share_every_default() -> None:
    """A hand-written spec and a recipe stage that leave a setting out must train alike: the
    trainer's Stage takes its required fields and defaults from StageConfig, so they cannot
    drift (warmup 10 vs 20, eval_every 0 vs 100, eval_batches 4 vs 8 did)."""
    recipe = {f.name: f for f in dataclasses.fields(StageConfig)}
    trainer_ = {f.name: f for f in dataclasses.fields(loop.Stage)}
    assert set(trainer_) - set(recipe) == {"data"} and set(recipe) - set(trainer_) == {"mix"}
    for name in set(recipe) & set(trainer_):
        assert (trainer_[name].default, trainer_[name].default_factory) == (
            recipe[name].default,
            recipe[name].default_factory,
        ), name
    cfg = StageConfig(name="s", steps=5, batch_size=4, lr=2e-3)
    by_recipe = loop.Stage.from_config(cfg, data={})
    by_hand = loop.Stage.from_dict(
        {"name": "s", "data": {}, "steps": 5, "batch_size": 4, "lr": 2e-3}
    )
    assert by_recipe == by_hand and by_hand.min_lr == pytest.approx(2e-4)
    with pytest.raises(loop.TrainingError, match=r"\['steps', 'batch_size', 'lr'\] are required"):
        loop.Stage.from_dict({"name": "s", "data": {}})


def test_lr_schedule_warmup_then_cosine_to_min() -> None:
    stage = loop.Stage(name="s", data={}, steps=20, batch_size=8, lr=1.0, min_lr=0.1,
                       warmup_steps=4)  # fmt: skip
    lrs = [loop.lr_at(s, stage) for s in range(20)]
    assert lrs[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lrs[4] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    sched = loop.make_scheduler(opt, stage)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(lrs)  # the saved scheduler is the same schedule


def test_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[str] = []
    monkeypatch.setattr(loop, "bf16_native", lambda backend: False)
    assert loop.use_bf16("cpu", "bf16", logged.append) is False
    assert "no native bf16" in logged[0]
    monkeypatch.setattr(loop, "bf16_native", lambda backend: True)
    assert loop.use_bf16("cpu", "bf16", logged.append) is True
    assert loop.use_bf16("cpu", "fp32", logged.append) is False


def test_unknown_stage_or_spec_key_refused() -> None:
    with pytest.raises(loop.TrainingError, match="warmup"):
        loop.Stage.from_dict({"name": "s", "data": {}, "warmup": 20})
    with pytest.raises(loop.TrainingError, match="checkpoint_evry"):
        trainer.parse_spec({"init_dir": "i", "out_dir": "o", "stages": [], "checkpoint_evry": 5})
    with pytest.raises(loop.TrainingError, match="dtype"):
        TrainSpec(
            "i", "o", (loop.Stage(name="s", data={}, steps=1, batch_size=8, lr=1e-3),), dtype="fp8"
        )


def test_recipe_stage_becomes_one_trainer_stage() -> None:
    cfg = StageConfig("align", steps=7, batch_size=4, lr=2e-3, grad_clip=0.5, mix={"code": 1.0})
    spec = build_spec("i", "o", [(cfg, {"kind": "sft", "path": "x"})], seed=3, dtype="fp32")
    (stage,) = spec.stages
    assert (stage.steps, stage.lr, stage.min_lr, stage.grad_clip) == (7, 2e-3, 2e-4, 0.5)
    assert TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # JSON round trip


def test_sft_loss_only_on_unmasked_tokens(workspace: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace["init"]).eval()
    data = SftData(str(workspace["sft"]))
    batch = data.sample(np.random.default_rng(0), 4)
    with torch.no_grad():
        loss = batch_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_token = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), batch["input_ids"][:, 1:], reduction="none"
    )
    keep = batch["labels"][:, 1:] != -100
    assert 0 < keep.sum() < keep.numel()
    assert loss.item() == pytest.approx(per_token[keep].mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(per_token.mean().item(), rel=1e-3)


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_loss_matches_the_reference(workspace: dict[str, Path], autocast: bool) -> None:
    """Same loss and gradients as full logits + cross_entropy, masked rows and chunks included."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace["init"])
    batch = SftData(str(workspace["sft"])).sample(np.random.default_rng(3), 6)
    batch["labels"][0] = -100  # a row without labels contributes nothing
    count = (batch["labels"][:, 1:] != -100).sum()
    grads = []
    for fused in (False, True):
        model.zero_grad()
        lm = CausalLMLoss(model, fused=fused, chunk=16)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = lm(**batch) / count
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (ref_loss, ref_grads), (fused_loss, fused_grads) = grads
    assert lm.fused
    tol = 2e-2 if autocast else 1e-5
    assert fused_loss == pytest.approx(ref_loss, rel=tol)
    for a, b in zip(fused_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * 1e-2 if not autocast else 2e-3)


def test_model_flops_known_answer() -> None:
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    # per layer: q,o 64x64 each, k,v 64x32 each, mlp 3 x 64x128 -> 8192+4096+24576 = 36864
    assert throughput.decoder_matmul_params(cfg) == 2 * 36864
    flops = throughput.flops_per_step(cfg, seq_len=16, tokens=10, loss_tokens=8)
    assert flops == 10 * (6 * 73728 + 12 * 2 * 64 * 16) + 8 * 6 * 1000 * 64
    assert throughput.mfu(2e9, 2.0, 1e9, world_size=1) == 1.0
    assert throughput.mfu(2e9, 2.0, 1e9, world_size=2) == 0.5


def test_model_card_shows_training_figures(tmp_path: Path) -> None:
    metrics = {"parameters": 1234567, "tokens_per_s": 4321.0, "mfu": 0.123, "backend": "cpu",
               "world_size": 2, "stages": [{"name": "pretrain", "steps": 5, "val_loss": 3.14159,
                                           "tokens_per_s": 4000.0}]}  # fmt: skip
    write_model_card(tmp_path, "Draft", "t", metrics, {"x": "y"})
    card = (tmp_path / "README.md").read_text()
    assert "| model FLOPs utilization | 12.3% |" in card and "| parameters | 1,234,567 |" in card
    assert "stage `pretrain` | 5 steps, val loss 3.1416" in card


# ----------------------------------------------------------------------------- runs


def test_tiny_three_stage_run_via_entry_point(workspace: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "draft"
    proc = start_trainer(make_spec(workspace, out), tmp_path)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr[-3000:]
    assert "pretrain step 30/30" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    pretrain, continued, align = metrics["stages"]
    assert pretrain["train_loss"] < pretrain["first_train_loss"] - 1.0
    assert continued["val_loss"] < np.log(VOCAB)
    assert align["val_loss"] is not None and align["tokens"] > 0
    assert align["initial_val_loss"] > align["val_loss"]  # alignment learned the copy rule
    assert metrics["tokens_per_s"] > 0 and 0 < metrics["mfu"] < 1 and metrics["parameters"] > 0
    assert metrics["bf16_autocast"] is False and metrics["fused_loss"] is True
    assert "measured GEMM" in metrics["peak_flops_source"]
    rows = train_rows(out)
    assert {r["stage"] for r in rows} == {"pretrain", "continued", "align"}
    assert all({"loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(r) for r in rows)
    assert [r["global_step"] for r in rows] == list(range(1, 51))
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == VOCAB
    assert AutoTokenizer.from_pretrained(out)("w5").input_ids == [5]


def test_compiled_decoder_trains_like_eager(workspace: dict[str, Path], tmp_path: Path) -> None:
    """`compile` goes through torch.compile (dynamo + AOT autograd; the `aot_eager` backend keeps
    the test fast, `compile: true` uses inductor) and changes no numbers."""
    losses = {}
    for mode in (False, "aot_eager"):
        spec = make_spec(workspace, tmp_path / str(mode), pretrain_steps=3)
        spec["stages"] = spec["stages"][:1]
        metrics = trainer.train({**spec, "compile": mode}, lambda m: None, lambda p: None)
        losses[mode] = [r["loss"] for r in train_rows(tmp_path / str(mode))]
        assert metrics["compiled"] == mode
    np.testing.assert_allclose(losses["aot_eager"], losses[False], rtol=1e-4)


def test_two_processes_match_one(workspace: dict[str, Path], reference: Path, tmp_path: Path):
    """The resource launches torchrun x2 (DDP on gloo) under Pipes; same global batch, so the
    loss curve, validation loss and weights are the single process's."""
    out = tmp_path / "ddp"
    spec = resume_spec(workspace, out)

    @dg.asset
    def ddp_draft(context, trainer: HPUTrainingResource) -> dg.MaterializeResult:
        return dg.MaterializeResult(
            metadata=trainer.train(context, TrainSpec.from_dict(spec), tmp_path / "work")
        )

    instance = dg.DagsterInstance.ephemeral()
    res = HPUTrainingResource(backend="cpu", num_devices=2, threads=2, checkpoint_every=6)
    result = dg.materialize([ddp_draft], resources={"trainer": res}, instance=instance)
    assert result.success
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("torch.distributed.run" in m and "--nproc_per_node 2" in m for m in messages)
    assert any("parameters on cpu x2" in m for m in messages)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert_same_run(out, reference, rtol=1e-4)


def test_resume_after_kill_9_matches_uninterrupted(
    workspace: dict[str, Path], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "draft"
    spec = resume_spec(workspace, out)
    proc = start_trainer(spec, tmp_path)
    ckpts = out / "_checkpoints"
    wait_for(lambda: (ckpts / "LATEST").is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(ckpts)
    assert killed_at is not None and killed_at.global_step < 32
    assert not (out / "metrics.json").exists()
    rerun = subprocess.run(entry_command(tmp_path / "spec.json"), cwd=REPO, capture_output=True,
                           text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from step-{killed_at.global_step:08d}" in rerun.stdout
    assert_same_run(out, reference, rtol=1e-5)
    files = {p.name for p in latest_checkpoint(ckpts).path.iterdir()}
    assert files == {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "state.json"}
    assert len(list(ckpts.glob("step-*"))) == 2  # keep_checkpoints


def test_sigterm_writes_a_checkpoint_then_rerun_finishes(
    workspace: dict[str, Path], reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "draft"
    spec = resume_spec(workspace, out, checkpoint_every=0)  # only the signal writes mid-stage
    proc = start_trainer(spec, tmp_path)
    wait_for(lambda: (out / "train_log.jsonl").is_file() and bool(train_rows(out)), proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "stopped by signal 15" in stderr
    stopped = latest_checkpoint(out / "_checkpoints")
    assert stopped is not None and 1 <= stopped.global_step < 32
    rerun = subprocess.run(entry_command(tmp_path / "spec.json"), cwd=REPO, capture_output=True,
                           text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_same_run(out, reference, rtol=1e-5)


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
        trainer.train(spec, log=lambda m: None, report=lambda p: None)
    assert not (tmp_path / "out").exists()  # refused before the model was even loaded


def test_nan_loss_stops_with_step(workspace: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(workspace["init"])
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan-init")
    spec = make_spec({**workspace, "init": tmp_path / "nan-init"}, tmp_path / "out")
    with pytest.raises(loop.TrainingError, match="stage 'pretrain' step 1: loss is nan.*none yet"):
        trainer.train(spec, log=lambda m: None, report=lambda p: None)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_exploding_loss_stops_and_keeps_the_last_good_checkpoint(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = make_spec(workspace, out, pretrain_steps=6)
    spec["stages"][1].update(
        lr=300.0, min_lr=300.0, warmup_steps=0
    )  # a learning rate that blows up
    with pytest.raises(
        loop.TrainingError, match=r"stage 'continued' step \d+: (loss|gradient)"
    ) as e:
        trainer.train(spec, log=lambda m: None, report=lambda p: None)
    assert "step-00000006" in str(e.value)  # the end of the healthy stage
    kept = latest_checkpoint(out / "_checkpoints")
    assert kept is not None and kept.global_step == 6 and kept.state["stage"] == "pretrain"


def test_out_of_memory_names_the_settings_to_lower(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    """A real allocation failure: the trainer runs under a 4 GB address-space limit."""
    spec = make_spec(workspace, tmp_path / "out")
    spec["stages"] = [{**spec["stages"][0], "batch_size": 32768, "steps": 2}]

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    proc = start_trainer(spec, tmp_path, preexec_fn=limit_memory)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 1
    assert "stage 'pretrain' step 1: out of memory on cpu" in stderr
    assert "batch_size=32768" in stderr and "seq_len=64" in stderr and "grad_accum=1" in stderr


def test_entry_point_refuses_a_bad_spec_before_taking_the_checkpoint_lock(tmp_path: Path) -> None:
    """A spec with a relative out_dir used to leave `y/_checkpoints/.trainer.lock` in the
    working directory (the repository, where it got committed): the lock was taken before the
    spec was validated. Now the spec is refused first and nothing is written."""
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"init_dir": "x", "out_dir": "y", "stages": [{"name": "s"}]}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        entry_command(spec_path), capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
    assert proc.returncode != 0
    assert "training failed: stage" in proc.stderr and "'data'" in proc.stderr
    assert list(cwd.iterdir()) == []


def test_resource_trains_through_pipes_in_materialize(
    workspace: dict[str, Path], tmp_path: Path
) -> None:
    spec = make_spec(workspace, tmp_path / "draft", pretrain_steps=10)

    @dg.asset
    def tiny_draft(context, trainer: HPUTrainingResource) -> dg.MaterializeResult:
        metrics = trainer.train(context, TrainSpec.from_dict(spec), tmp_path / "work")
        return dg.MaterializeResult(metadata={"val_loss": metrics["val_loss"]})

    instance = dg.DagsterInstance.ephemeral()
    res = HPUTrainingResource(threads=1, checkpoint_every=5)
    result = dg.materialize([tiny_draft], resources={"trainer": res}, instance=instance)
    assert result.success
    mat = result.asset_materializations_for_node("tiny_draft")[0]
    assert mat.metadata["val_loss"].value > 0
    messages = [r.user_message for r in instance.all_logs(result.run_id)]
    assert any("pretrain step 10/10" in m for m in messages), messages[-20:]
    assert any("training " in m and "parameters on cpu x1" in m for m in messages)
    assert any("checkpoint step-00000005" in m for m in messages)
    written = json.loads((tmp_path / "work" / "train_spec.json").read_text())
    assert written["backend"] == "cpu" and written["checkpoint_every"] == 5


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("avx2 fma", False),
        ("avx512f avx512bw avx512_vnni", False),  # oneDNN emulates bf16 here: slower than fp32
        ("avx512f avx512_bf16", True),
        ("amx_tile amx_bf16", True),
    ],
)
def test_bf16_is_native_only_with_avx512_bf16_or_amx(tmp_path, flags, native):
    from fastdraft_dag.training.backends import cpu_has_fast_bf16

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n")
    assert cpu_has_fast_bf16(info) is native
    assert cpu_has_fast_bf16(tmp_path / "missing") is False


def test_kd_and_training_agree_on_bf16():
    from fastdraft_dag.distill.backends import resolve_dtype
    from fastdraft_dag.training.backends import bf16_native

    assert (resolve_dtype("auto") == "bf16") is bf16_native("cpu")
