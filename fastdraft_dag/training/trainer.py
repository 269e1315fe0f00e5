"""`train(spec)`: validate, open data, load or resume, run every stage, save the draft.

The spec is a `TrainSpec` (spec.py), as JSON when it crosses a process boundary; every key has a
default except `init_dir`, `out_dir` and `stages`. The `hpu` backend is handed to
`gaudi.py` (optimum-habana) before anything else is loaded, except an EAGLE-3 head
(`gaudi_trainer_runs`); `cpu` and `cuda` run `loop.py`, in one process or N (torchrun).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdraft_dag.draft.eagle3 import Eagle3Head
from fastdraft_dag.training import checkpoint as ckpt
from fastdraft_dag.training.backends import resolve_backend
from fastdraft_dag.training.data import Data, open_data, restore_generator
from fastdraft_dag.training.distributed import (
    StopRequest,
    World,
    barrier,
    close_world,
    device_for_rank,
    init_world,
    world_from_env,
    wrap,
)
from fastdraft_dag.training.eagle3 import eagle3_loss
from fastdraft_dag.training.errors import TrainingError
from fastdraft_dag.training.loop import (
    Progress,
    Run,
    make_optimizer,
    make_scheduler,
    run_stage,
    use_bf16,
)
from fastdraft_dag.training.losses import CausalLMLoss
from fastdraft_dag.training.model_io import load_for_training, save_draft, trimmed_data
from fastdraft_dag.training.spec import Stage, TrainSpec
from fastdraft_dag.training.telemetry import Log, Report, Telemetry
from fastdraft_dag.training.throughput import peak_flops


def parse_spec(spec: TrainSpec | Mapping[str, Any]) -> tuple[TrainSpec, list[Stage]]:
    """The typed spec (validated before anything is loaded) and its stages."""
    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.from_dict(spec)
    return spec, list(spec.stages)


def fingerprint(spec: TrainSpec) -> str:
    """What a checkpoint must agree with to be resumed: the stages and the seed.

    Backend, threads and world size are left out on purpose: a run checkpointed on 2 processes
    may resume on 1 (the global batch is the same).
    """
    stages = [asdict(st) for st in spec.stages]
    what: dict[str, Any] = {"stages": stages, "seed": spec.seed}
    if spec.teacher_dir:  # an EAGLE-3 head: the unroll is part of what is learned
        what["ttt"] = [spec.ttt_steps, spec.ttt_decay]
    blob = json.dumps(what, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _check_world(stages: list[Stage], world: World) -> None:
    for stage in stages:
        if stage.batch_size % world.size:
            raise TrainingError(
                f"stage {stage.name!r}: batch_size={stage.batch_size} is not divisible by the "
                f"{world.size} processes; the global batch must split evenly"
            )


def _summary(run: Run, params: int, spec: TrainSpec, peak_source: str) -> dict[str, Any]:
    results = run.results
    tokens = sum(r["tokens"] for r in results)
    seconds = sum(r["train_seconds"] for r in results)
    flops = sum(r["mfu"] * r["train_seconds"] for r in results)  # in units of peak x devices
    return {
        "stages": results,
        "parameters": params,
        "backend": run.backend,
        "world_size": run.world.size,
        "dtype": spec.dtype,
        "bf16_autocast": run.bf16,
        "fused_loss": run.lm.fused,
        "compiled": spec.compile,
        "val_loss": results[-1]["val_loss"],
        "tokens": tokens,
        "train_seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "mfu": flops / seconds if seconds else 0.0,
        "peak_flops_per_device": run.peak,
        "peak_flops_source": peak_source,
    }


def _resume_point(spec: TrainSpec, ckpt_dir: Path, fp: str) -> ckpt.Checkpoint | None:
    found = ckpt.latest_checkpoint(ckpt_dir)
    if found and found.state.get("fingerprint") != fp:
        raise TrainingError(
            f"checkpoints in {str(ckpt_dir)!r} belong to another spec (stages or seed changed); "
            "delete that directory to start over, or restore the spec to resume"
        )
    return found


def gaudi_trainer_runs(spec: TrainSpec, backend: str, world: World) -> bool:
    """Whether `hpu` training goes to GaudiTrainer (gaudi.py) rather than this module's loop.

    An EAGLE-3 head runs the target inside its loss, which GaudiTrainer's model-forward loss
    cannot express: it trains on this loop, on one HPU in eager mode (PT_HPU_LAZY_MODE=0, so
    no mark_step is needed). Several HPUs would need an HCCL process group: refused here.
    """
    if backend != "hpu":
        return False
    if not spec.teacher_dir:
        return True
    if world.distributed:
        raise TrainingError(
            f"an EAGLE-3 head trains on one HPU (the loop has no HCCL process group); "
            f"{world.size} devices were launched: set FASTDRAFT_HPU_DEVICES=1"
        )
    os.environ.setdefault("PT_HPU_LAZY_MODE", "0")
    return False


def train(spec: dict[str, Any] | TrainSpec, log: Log, report: Report) -> dict[str, Any]:
    """Run all stages of `spec` in order, save draft + metrics to `out_dir`, return metrics."""
    spec, stages = parse_spec(spec)
    backend = resolve_backend(spec.backend)
    if gaudi_trainer_runs(spec, backend, world_from_env()):
        from fastdraft_dag.training.gaudi import train_gaudi

        return train_gaudi(spec, stages, log, report)
    world = init_world(backend)
    try:
        return _train(spec, stages, backend, world, log, report)
    finally:
        close_world(world)


def make_loss(model: torch.nn.Module, spec: TrainSpec) -> torch.nn.Module:
    """The summed-loss module the loop trains through: the head's own for an EAGLE-3 head."""
    if isinstance(model, Eagle3Head):
        init = Path(spec.init_dir)
        return eagle3_loss(model, init, spec.teacher_dir, spec.ttt_steps, spec.ttt_decay)
    return CausalLMLoss(model, fused=bool(spec.fused_loss))


def _train(
    spec: TrainSpec, stages: list[Stage], backend: str, world: World, log: Log, report: Report
) -> dict[str, Any]:
    torch.set_num_threads(int(spec.threads))
    torch.manual_seed(int(spec.seed))
    _check_world(stages, world)
    datas = [open_data(s.data) for s in stages]  # verifies every shard before any compute
    model = load_for_training(spec, stages, datas)
    datas = trimmed_data(model, datas)
    device = device_for_rank(backend, world)
    out = Path(spec.out_dir)
    ckpt_dir = Path(spec.checkpoint_dir or out / "_checkpoints")
    resume = _resume_point(spec, ckpt_dir, fingerprint(spec))
    if resume:
        ckpt.load_weights(resume, model)
    model.to(device).train()
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").unlink(missing_ok=True)
    barrier(world)
    bf16 = use_bf16(backend, spec.dtype, log if world.is_main else lambda m: None)
    lm = make_loss(model, spec).to(device)  # an EAGLE-3 loss carries the target along
    if spec.compile and not isinstance(
        model, Eagle3Head
    ):  # true: inductor; a string names another dynamo backend
        backend_name = spec.compile if isinstance(spec.compile, str) else "inductor"
        model.get_decoder().compile(backend=backend_name)
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak, peak_source = peak_flops(backend, device, dtype, float(spec.peak_flops))
    tel = Telemetry(out, world.is_main, log, report, resume.global_step if resume else None)
    params = sum(p.numel() for p in model.parameters())
    tel.log(
        f"training {params:,} parameters on {backend} x{world.size} ({spec.dtype}, "
        f"fused loss {lm.fused}), {len(stages)} stages"
        + (f"; resuming from {resume.path.name}" if resume else "")
    )
    try:
        with StopRequest() as stop:
            run = Run(
                backend=backend,
                device=device,
                world=world,
                bf16=bf16,
                lm=lm,
                wrapped=wrap(lm, world, device),
                rng=restore_generator(resume.state["rng"])
                if resume
                else np.random.default_rng(int(spec.seed)),
                tel=tel,
                stop=stop,
                spec=spec,
                ckpt_dir=ckpt_dir,
                fingerprint=fingerprint(spec),
                explode_at=float(spec.explode_factor) * math.log(model.config.vocab_size),
                peak=peak,
                results=list(resume.state["results"]) if resume else [],
                last_checkpoint=resume.path if resume else None,
            )
            _run_stages(run, stages, datas, resume)
        metrics = _summary(run, params, spec, peak_source)
        if world.is_main:
            save_draft(model, spec, metrics)
        barrier(world)
    finally:
        tel.close()
    tel.report(
        {
            "event": "done",
            "val_loss": metrics["val_loss"],
            "tokens_per_s": metrics["tokens_per_s"],
            "mfu": metrics["mfu"],
        }
    )
    return metrics


def _run_stages(
    run: Run, stages: list[Stage], datas: list[Data], resume: ckpt.Checkpoint | None
) -> None:
    """Skip stages a checkpoint shows finished; continue the one it was in; run the rest."""
    if resume:
        ckpt.load_rng(resume)
    offset = 0
    for i, (stage, data) in enumerate(zip(stages, datas, strict=True)):
        if i < len(run.results):
            offset += stage.steps
            continue
        optimizer = make_optimizer(run.lm.model, stage)
        scheduler = make_scheduler(optimizer, stage)
        progress = Progress()
        if resume and resume.state["stage_index"] == i:
            ckpt.load_training_state(resume, optimizer, scheduler)
            progress = Progress(**resume.state["progress"])
        summary = run_stage(
            run, i, stage, data, offset=offset, p=progress, opt=optimizer, sched=scheduler
        )
        run.tel.report({"event": "stage", **summary})
        offset += stage.steps
