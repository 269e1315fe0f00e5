"""The `hpu` backend: optimum-habana's GaudiTrainer (+ DeepSpeed ZeRO) behind the same spec.

Runs only in the Gaudi environment (`requirements/gaudi.txt`: optimum-habana 1.21.2, which pins
transformers 4.55, inside Intel's Gaudi PyTorch container; see the README). Launched for N devices
by `gaudi_spawn.py` (DeepSpeed launcher). Same stages, data, schedule shape (warmup then cosine to
`min_lr`) and outputs as `loop.py`; what differs:
- checkpoints are the HF Trainer's (weights, optimizer, scheduler, RNG states, and the data
  position as the number of batches to skip), one directory per stage under
  `<checkpoint_dir>/gaudi/<i>-<stage>/`, resumed with `resume_from_checkpoint`; a finished stage
  leaves `final/` there and is skipped on a rerun;
- the loss is the model's own (HF shifts labels and ignores -100), in bf16 autocast;
- multi-device is DeepSpeed ZeRO-`zero_stage` (1 or 2) over HCCL.
Every optimum.habana import is inside a function: this module imports anywhere, so its argument
building is unit-tested on machines without Gaudi.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastdraft_dag.draft.derived import load_draft
from fastdraft_dag.draft.derived import save_draft as save_hf_draft
from fastdraft_dag.training.data import Data, open_data
from fastdraft_dag.training.errors import TrainingError
from fastdraft_dag.training.model_io import freeze, load_for_training, save_draft, trimmed_data
from fastdraft_dag.training.telemetry import Log, Report
from fastdraft_dag.training.throughput import DECLARED_PEAK, flops_per_step, mfu


class PlanDataset(torch.utils.data.Dataset):
    """Row i of a stage is a draw seeded by (seed, stage, i): the HF sampler and its
    skip-batches-on-resume only ever see indices, so any order and any resume point give the
    same rows, on any number of devices."""

    def __init__(self, data: Data, rows: int, seed: int, stage_index: int) -> None:
        self.data, self.rows, self.seed, self.stage_index = data, rows, seed, stage_index

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.stage_index, i])
        batch = self.data.batch(self.data.draw(rng, 1))
        return {k: v[0] for k, v in batch.items()}


class ValDataset(torch.utils.data.Dataset):
    """The validation rows `loop.evaluate` uses, as single examples."""

    def __init__(self, data: Data, batch_size: int, batches: int) -> None:
        self.rows = [
            {k: v[j] for k, v in b.items()}
            for _, b in data.val_batches(batch_size, batches)
            for j in range(len(b["input_ids"]))
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


def zero_config(stage: int) -> dict[str, Any]:
    """DeepSpeed ZeRO-1/2 as Intel recommends it on Gaudi (no overlap/contiguous/reduce-scatter);
    "auto" lets the HF integration fill batch sizes, clipping and bf16 from the arguments."""
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "zero_optimization": {
            "stage": stage,
            "overlap_comm": False,
            "contiguous_gradients": False,
            "reduce_scatter": False,
        },
    }


def gaudi_arguments(
    spec: dict[str, Any], stage: Any, stage_dir: Path, world_size: int, tb_dir: Path
) -> dict[str, Any]:
    """GaudiTrainingArguments keywords for one stage (plain data, so it is testable anywhere)."""
    if stage.batch_size % world_size:
        raise TrainingError(
            f"stage {stage.name!r}: batch_size={stage.batch_size} does not split over "
            f"{world_size} devices"
        )
    per_device = stage.batch_size // world_size
    use_zero = world_size > 1 and int(spec.zero_stage) > 0
    return {
        "output_dir": str(stage_dir),
        "use_habana": True,
        "use_lazy_mode": True,
        "bf16": spec.dtype == "bf16",
        "per_device_train_batch_size": per_device,
        "per_device_eval_batch_size": per_device,
        "gradient_accumulation_steps": stage.grad_accum,
        "max_steps": stage.steps,
        "learning_rate": stage.lr,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr": stage.min_lr},
        "warmup_steps": stage.warmup_steps,
        "weight_decay": stage.weight_decay,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "max_grad_norm": stage.grad_clip,
        "logging_steps": max(1, stage.steps // 10),
        "logging_dir": str(tb_dir),
        "report_to": ["tensorboard"],
        "save_strategy": "steps",
        "save_steps": int(spec.checkpoint_every) or stage.steps,
        "save_total_limit": int(spec.keep_checkpoints),
        "eval_strategy": "steps" if stage.eval_every else "no",
        "eval_steps": stage.eval_every or None,
        "seed": int(spec.seed),
        "data_seed": int(spec.seed),
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "throughput_warmup_steps": min(3, stage.steps - 1),
        "deepspeed": zero_config(int(spec.zero_stage)) if use_zero else None,
    }


def _habana() -> Any:
    """optimum.habana, or a clear error (it raises IndexError, not ImportError, off Gaudi)."""
    try:
        import optimum.habana as habana
    except Exception as exc:
        raise TrainingError(
            "backend 'hpu' needs optimum-habana in the trainer's environment (see "
            f"requirements/gaudi.txt and the README's Gaudi section): {exc!r}"
        ) from exc
    return habana


def _progress_callback(stage_name: str, log: Log, report: Report, rows: Path) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Trainer logs -> Dagster run log (via Pipes) and train_log.jsonl."""

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if not state.is_world_process_zero or not logs:
                return
            figures = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if isinstance(v, float))
            log(f"{stage_name} step {state.global_step}/{state.max_steps} {figures}")
            row = {"kind": "train", "stage": stage_name, "global_step": state.global_step, **logs}
            with open(rows, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            report({"event": "log", **row})

    return Progress()


def _stage_summary(stage: Any, data: Data, trainer: Any, output: Any, peak: float) -> dict:
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evaluation = trainer.evaluate() if len(trainer.eval_dataset) else {}
    seconds = float(output.metrics.get("train_runtime", 0.0))
    rows = stage.steps * stage.batch_size * stage.grad_accum
    tokens = rows * data.seq_len  # padded length for SFT: an upper bound
    flops = flops_per_step(trainer.model.config, data.seq_len, tokens, tokens)
    world = trainer.args.world_size
    return {
        "name": stage.name,
        "steps": stage.steps,
        "first_train_loss": losses[0] if losses else None,
        "train_loss": losses[-1] if losses else None,
        "val_loss": evaluation.get("eval_loss"),
        "val_loss_by_domain": {},
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "mfu": mfu(flops, seconds, peak, world),
        "train_seconds": seconds,
    }


def _peak(spec: dict[str, Any]) -> float:
    if float(spec.peak_flops) > 0:
        return float(spec.peak_flops)
    try:
        from habana_frameworks.torch import hpu

        name = hpu.get_device_name().upper()
    except Exception:
        name = "GAUDI2"
    return next((v for k, v in DECLARED_PEAK.items() if k in name), DECLARED_PEAK["GAUDI2"])


def train_gaudi(spec: dict[str, Any], stages: list[Any], log: Log, report: Report) -> dict:
    """All stages with GaudiTrainer; saves the draft + metrics.json like `trainer.train`."""
    datas = [open_data(s.data) for s in stages]  # checksums before anything is loaded
    habana = _habana()
    model = load_for_training(spec, stages, datas)
    datas = trimmed_data(model, datas)
    out = Path(spec.out_dir)
    root = Path(spec.checkpoint_dir or out / "_checkpoints") / "gaudi"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    gaudi_config = habana.GaudiConfig(
        use_fused_adam=True, use_fused_clip_norm=True, use_torch_autocast=spec.dtype == "bf16"
    )
    peak, results = _peak(spec), []
    for i, (stage, data) in enumerate(zip(stages, datas, strict=True)):
        stage_dir = root / f"{i}-{stage.name}"
        final = stage_dir / "final"
        if (final / "summary.json").is_file():
            model = load_draft(final, trimmed=True).train()  # the same head as it was saved
            freeze(model, spec.freeze)
            results.append(json.loads((final / "summary.json").read_text()))
            log(f"stage {stage.name}: finished earlier, loaded {final}")
            continue
        args = habana.GaudiTrainingArguments(
            **gaudi_arguments(spec, stage, stage_dir, world, out / "tensorboard" / stage.name)
        )
        rows = stage.steps * stage.batch_size * stage.grad_accum
        trainer = habana.GaudiTrainer(
            model=model,
            gaudi_config=gaudi_config,
            args=args,
            train_dataset=PlanDataset(data, rows, int(spec.seed), i),
            eval_dataset=ValDataset(data, stage.batch_size, stage.eval_batches),
            callbacks=[_progress_callback(stage.name, log, report, out / "train_log.jsonl")],
        )
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(stage_dir)) if stage_dir.is_dir() else None
        output = trainer.train(resume_from_checkpoint=last)
        results.append(_stage_summary(stage, data, trainer, output, peak))
        if trainer.is_world_process_zero():
            save_hf_draft(trainer.model, final)  # full-vocabulary layout + draft_vocab.json
            (final / "summary.json").write_text(json.dumps(results[-1], indent=2))
        report({"event": "stage", **results[-1]})
    metrics = _gaudi_summary(results, model, spec, world, peak)
    if int(os.environ.get("RANK", "0")) == 0:
        save_draft(model, spec, metrics)
    return metrics


def _gaudi_summary(results: list[dict], model: Any, spec: dict, world: int, peak: float) -> dict:
    tokens = sum(r["tokens"] for r in results)
    seconds = sum(r["train_seconds"] for r in results)
    return {
        "stages": results,
        "parameters": sum(p.numel() for p in model.parameters()),
        "backend": "hpu",
        "world_size": world,
        "dtype": spec.dtype,
        "bf16_autocast": spec.dtype == "bf16",
        "zero_stage": int(spec.zero_stage) if world > 1 else 0,
        "val_loss": results[-1]["val_loss"],
        "tokens": tokens,
        "train_seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "mfu": sum(r["mfu"] * r["train_seconds"] for r in results) / seconds if seconds else 0.0,
        "peak_flops_per_device": peak,
        "peak_flops_source": "declared (Gaudi datasheet or the resource's peak_tflops)",
    }
