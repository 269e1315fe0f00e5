"""The target's top-k log-probabilities over the KD answers: the data of logit distillation.

The target reads each training row teacher-forced (prompt + its own answer, rendered exactly as
the draft will see it, since the rows are the SFT arrays) and, at every position that carries a
label, keeps its k most likely next tokens with their log-probabilities under the full softmax.
Stored dense beside the SFT arrays (`train_teacher_ids` [N, L, k] int32, `train_teacher_logp`
[N, L, k] float16, aligned with `train_labels`), so the trainer's batches carry them for free.
One forward pass per row, batched by length; on 2 cores the default KD answers take minutes,
which is why `align.stage.loss` stays "ce" unless a run has the budget (docs/recipe.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fastdraft_dag.distill.backends import load_target
from fastdraft_dag.training.data import IGNORE

LogitsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (ids, mask) -> logits [B, L, V]


def topk_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k ids (best first) and their log-softmax values over the last axis, in fp32."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return ids, values


def teacher_topk(
    arrays: dict[str, np.ndarray], logits_fn: LogitsFn, k: int, batch_size: int = 4
) -> dict[str, np.ndarray]:
    """`train_teacher_ids` / `train_teacher_logp` for the `train_*` rows of SFT arrays.

    Position j holds the target's distribution over token j (read from its logits at j - 1),
    where `train_labels[:, j]` is a label; elsewhere ids are 0 and log-probs 0 (never read).
    """
    ids, mask = arrays["train_input_ids"], arrays["train_attention_mask"]
    labels = arrays["train_labels"]
    n, width = ids.shape
    out_ids = np.zeros((n, width, k), dtype=np.int32)
    out_logp = np.zeros((n, width, k), dtype=np.float16)
    lengths = mask.sum(axis=1)
    order = np.argsort(lengths)  # similar lengths together: little padding per batch
    for start in tqdm(range(0, n, batch_size), desc="teacher top-k", unit="batch"):
        rows = order[start : start + batch_size]
        cut = int(lengths[rows].max())
        x = torch.from_numpy(ids[rows, :cut].astype(np.int64))
        m = torch.from_numpy(mask[rows, :cut].astype(np.int64))
        with torch.no_grad():
            top_ids, top_logp = topk_logprobs(logits_fn(x, m)[:, :-1], k)
        is_label = labels[rows, 1:cut] != IGNORE
        out_ids[rows, 1:cut] = np.where(is_label[..., None], top_ids.numpy(), 0)
        out_logp[rows, 1:cut] = np.where(is_label[..., None], top_logp.numpy(), 0.0)
    return {"train_teacher_ids": out_ids, "train_teacher_logp": out_logp}


def torch_target_logits(target_dir: Path, threads: int | None) -> LogitsFn:
    """The target in fp32 (the teacher's probabilities are what the draft is held to)."""
    model, _ = load_target(target_dir, "fp32", threads or torch.get_num_threads())

    def logits(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=x, attention_mask=mask).logits

    return logits
