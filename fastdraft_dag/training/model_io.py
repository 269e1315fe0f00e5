"""Loading checks and saving of the trained draft, shared by the CPU/CUDA loop and the Gaudi path."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.training.data import Data
from fastdraft_dag.training.errors import TrainingError
from fastdraft_dag.training.spec import Stage, TrainSpec


def check_fits(model: torch.nn.Module, stages: list[Stage], datas: list[Data]) -> None:
    """Token ids and sequence lengths the model cannot embed are refused before step 1."""
    vocab = model.get_input_embeddings().weight.shape[0]
    max_pos = getattr(model.config, "max_position_embeddings", None)
    for stage, data in zip(stages, datas, strict=True):
        if data.max_token_id >= vocab:
            raise TrainingError(
                f"stage {stage.name!r}: data token ids reach {data.max_token_id} but the model's "
                f"vocabulary has {vocab} entries (tokenizer mismatch?)"
            )
        if max_pos and data.seq_len > max_pos:
            raise TrainingError(
                f"stage {stage.name!r}: seq_len {data.seq_len} > max_position_embeddings {max_pos}"
            )


def save_draft(model: torch.nn.Module, spec: TrainSpec, metrics: dict[str, Any]) -> None:
    """HF layout + the init dir's tokenizer; metrics.json last, so its presence means 'complete'."""
    out = Path(spec.out_dir)
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    copy_tokenizer_files(Path(spec.init_dir), out)
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out / "metrics.json")
