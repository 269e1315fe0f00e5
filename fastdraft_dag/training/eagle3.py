"""Training an EAGLE-3 head: the target computes its features in the loop, the head unrolls.

The loss module holds the frozen target beside the head (`TargetTaps`), so a batch of SFT rows
(the target's own answers) is all the data it needs: features and teacher distribution are
computed per batch, in fp32, on the training device. That costs one target forward per row
visited, the same as a stored pass for a single epoch, with nothing to store (the default
target's three taps are 3.5 KB per token in fp16) and resume that is exact by construction: the
seeded plan picks the rows, the target is deterministic.

Training-time test (EAGLE-3, arXiv 2503.01840): step 0 reads the target's features, steps
1..n-1 read the head's own previous state, as at decode time; step j's loss is weighted
`ttt_decay ** j` and the weights are normalised, so the loss stays on the scale of one
cross-entropy per answer position (what `explode_factor` and the logs expect).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from fastdraft_dag.draft.derived import load_draft
from fastdraft_dag.draft.eagle3 import Eagle3Head, TargetTaps, head_layers
from fastdraft_dag.training.config import STAGE_LOSSES
from fastdraft_dag.training.data import IGNORE
from fastdraft_dag.training.errors import TrainingError


def step_weights(steps: int, decay: float) -> list[float]:
    """decay**j for j < steps, normalised to sum to 1."""
    raw = [decay**j for j in range(steps)]
    return [w / sum(raw) for w in raw]


def _shifted(x: torch.Tensor, by: int) -> torch.Tensor:
    """x[:, by:] right-padded back to x's width (with IGNORE for labels, 0 otherwise)."""
    fill = IGNORE if x.dtype == torch.long else 0
    pad = [0, 0] * (x.dim() - 2) + [0, by]
    return F.pad(x[:, by:], pad, value=fill)


def distill_loss_sum(
    logits: torch.Tensor, teacher: torch.Tensor, kind: str, labels: torch.Tensor
) -> torch.Tensor:
    """Summed loss of draft logits [N, K] against teacher logits [N, K] over the same rows.

    The teacher is renormalised over the draft vocabulary: the head cannot propose anything else,
    so that conditional is what greedy acceptance rewards it for matching. "ce" ignores the
    teacher and uses the labels (the target's own next token, as draft rows).
    """
    if kind == "ce":
        return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
    logq = torch.log_softmax(logits.float(), dim=-1)
    logp = torch.log_softmax(teacher.float(), dim=-1)
    if kind == "fkl":
        return (logp.exp() * (logp - logq)).sum()
    return 0.5 * (logp.exp() - logq.exp()).abs().sum()


class Eagle3Loss(torch.nn.Module):
    """`CausalLMLoss`'s interface for an EAGLE-3 head: summed loss of a batch, caller normalises.

    `model` is the head (what the optimizer, checkpoints and the saved draft see); `taps` the
    frozen target. Evaluation reports step 0's cross-entropy on the labels, comparable to a
    standalone draft's validation loss.
    """

    def __init__(self, head: Eagle3Head, taps: TargetTaps, steps: int, decay: float) -> None:
        super().__init__()
        if steps < 1 or not 0 < decay <= 1:
            raise TrainingError(f"eagle3: ttt_steps {steps} must be >= 1, ttt_decay in (0, 1]")
        self.model, self.taps = head, taps
        self.weights = step_weights(steps, decay)
        self.fused = False
        self.objective = "ce"  # set per stage by the loop

    def forward(  # noqa: D102
        self, input_ids, labels, attention_mask=None, teacher_ids=None, teacher_logp=None
    ) -> torch.Tensor:
        if self.objective not in STAGE_LOSSES:
            raise TrainingError(f"eagle3 loss {self.objective!r}: expected {STAGE_LOSSES}")
        train = self.training
        kind = self.objective if train else "ce"
        feats, last = self.taps(input_ids, attention_mask, final=kind != "ce")
        steps = len(self.weights) if train else 1
        states = self.model.unroll(input_ids, feats, steps)
        total = torch.zeros((), device=input_ids.device)
        kept = self.model.kept_ids
        for j, (state, w) in enumerate(zip(states, self.weights if train else [1.0], strict=False)):
            target = _shifted(labels, 2 + j)  # step j at t predicts token t+2+j
            keep = (target != IGNORE).reshape(-1)
            if not keep.any():
                continue
            h = state.reshape(-1, state.shape[-1])[keep]
            teacher = None
            if kind != "ce":  # target's logits at t+1+j predict token t+2+j
                hid = _shifted(last, 1 + j).reshape(-1, last.shape[-1])[keep]
                teacher = self.taps.head_logits(hid, kept)
            y = target.reshape(-1)[keep]
            total = total + w * distill_loss_sum(self.model.logits(h), teacher, kind, y)
        return total


def eagle3_loss(head: Eagle3Head, init_dir: Path, teacher_dir: str, steps: int, decay: float):
    """The loss module for a head initialised in `init_dir`, reading the target `teacher_dir`."""
    layers = head_layers(init_dir)
    if not teacher_dir or layers is None:
        raise TrainingError(
            f"{init_dir} holds an EAGLE-3 head: the spec needs teacher_dir (the target) and the "
            "head its tapped layers (eagle3_layers.json)"
        )
    target = load_draft(Path(teacher_dir), trimmed=False).float()
    if json.loads((Path(teacher_dir) / "config.json").read_text())["hidden_size"] * 3 != (
        head.fc.in_features
    ):
        raise TrainingError(f"{teacher_dir}: its width does not match the head's fc input")
    return Eagle3Loss(head, TargetTaps(target, layers), steps, decay)
