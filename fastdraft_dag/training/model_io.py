"""Loading checks and saving of the trained draft, shared by the CPU/CUDA loop and the Gaudi path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastdraft_dag.core.files import write_json_atomic
from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.draft.derived import kept_ids_of, load_draft
from fastdraft_dag.draft.derived import save_draft as save_hf_draft
from fastdraft_dag.draft.eagle3 import Eagle3Head, head_taps, is_eagle3_dir, load_head, save_head
from fastdraft_dag.training.data import Data, TrimmedLabels
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


def load_for_training(spec: TrainSpec, stages: list[Stage], datas: list[Data]) -> torch.nn.Module:
    """The init draft (its head trimmed when it has a draft vocabulary), frozen parts frozen; an
    EAGLE-3 head when the init dir holds one (its embedding is frozen by construction)."""
    init = Path(spec.init_dir)
    model = (load_head(init) if is_eagle3_dir(init) else load_draft(init, trimmed=True)).train()
    check_fits(model, stages, datas)
    freeze(model, spec.freeze)
    return model


def trimmed_data(model: torch.nn.Module, datas: list[Data]) -> list[Data]:
    """Labels mapped to a trimmed head's rows; untouched for a full-vocabulary draft."""
    kept = model.kept_ids if isinstance(model, Eagle3Head) else kept_ids_of(model)
    if kept is None:
        return datas
    vocab = model.get_input_embeddings().weight.shape[0]
    return [TrimmedLabels(d, kept, vocab) for d in datas]


def freeze(model: torch.nn.Module, parts: tuple[str, ...]) -> None:
    """Leave the embedding and/or the LM head out of training (the optimizer skips them)."""
    if "embed" in parts:
        model.get_input_embeddings().weight.requires_grad_(False)
    if "head" in parts:
        model.get_output_embeddings().weight.requires_grad_(False)


def save_draft(model: torch.nn.Module, spec: TrainSpec, metrics: dict[str, Any]) -> None:
    """HF layout + the init dir's tokenizer (and draft vocabulary); metrics.json last, so its
    presence means 'complete'."""
    out = Path(spec.out_dir)
    if isinstance(model, Eagle3Head):
        save_head(model.to("cpu"), out, Path(spec.init_dir), head_taps(Path(spec.init_dir)))
    else:
        save_hf_draft(model.to("cpu"), out)
        copy_tokenizer_files(Path(spec.init_dir), out)
    write_json_atomic(out / "metrics.json", metrics, sort_keys=False, default=None, unique=False)
