"""Sparse-logit distillation losses against values worked out by hand, and their data plumbing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastdraft_dag.training.data import SftData, TrimmedLabels
from fastdraft_dag.training.losses import CausalLMLoss, sparse_logit_loss_sum

# Draft: uniform over 4 tokens (q = 1/4 each). Teacher top-2: token 0 at 1/2, token 1 at 1/4, so
# 1/4 of its mass lies outside the stored support; the draft puts 1/2 there.
UNIFORM = torch.zeros(1, 4)
TOP2 = torch.tensor([[0, 1]])
TOP2_LOGP = torch.tensor([[math.log(0.5), math.log(0.25)]])


def test_forward_kl_matches_the_hand_computed_value() -> None:
    # 1/2 ln(1/2 / 1/4) + 1/4 ln(1/4 / 1/4) + residual 1/4 ln(1/4 / 1/2) = ln(2) / 4
    got = sparse_logit_loss_sum(UNIFORM, TOP2, TOP2_LOGP, "fkl")
    assert got.item() == pytest.approx(math.log(2) / 4, abs=1e-6)


def test_tvd_matches_the_hand_computed_value() -> None:
    # 1/2 (|1/2 - 1/4| + |1/4 - 1/4| + residual |1/4 - 1/2|) = 1/4
    got = sparse_logit_loss_sum(UNIFORM, TOP2, TOP2_LOGP, "tvd")
    assert got.item() == pytest.approx(0.25, abs=1e-6)


def test_a_dropped_id_joins_the_residual_bucket() -> None:
    # A trimmed head without token 1: support {0} at p 1/2, q 1/4; residual p 1/2 vs q 3/4.
    cols = torch.tensor([[0, -1]])
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    got = sparse_logit_loss_sum(UNIFORM, cols, TOP2_LOGP, "fkl")
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_full_support_equals_the_full_kl_and_sums_over_positions() -> None:
    torch.manual_seed(0)
    teacher, draft = torch.randn(3, 6), torch.randn(3, 6, requires_grad=True)
    logp = torch.log_softmax(teacher, -1)
    ids = logp.argsort(-1, descending=True)
    got = sparse_logit_loss_sum(draft, ids, logp.gather(1, ids), "fkl")
    want = torch.nn.functional.kl_div(
        torch.log_softmax(draft, -1), logp, log_target=True, reduction="sum"
    )
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()  # the gradient reaches the draft's logits
    assert draft.grad is not None and draft.grad.abs().sum() > 0


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="'kl'"):
        sparse_logit_loss_sum(UNIFORM, TOP2, TOP2_LOGP, "kl")


def _sft_npz(path, teacher: bool) -> str:
    ids = np.array([[5, 6, 7, 8, 0]], dtype=np.int32)
    labels = np.array([[-100, -100, 7, 8, -100]])
    mask = np.array([[1, 1, 1, 1, 0]], dtype=np.int8)
    arrays = {f"{s}_{k}": v for s in ("train", "val") for k, v in
              {"input_ids": ids, "labels": labels, "attention_mask": mask}.items()}  # fmt: skip
    if teacher:
        t_ids = np.zeros((1, 5, 2), dtype=np.int32)
        t_ids[0, 2], t_ids[0, 3] = [7, 3], [8, 9]
        arrays |= {"train_teacher_ids": t_ids, "train_teacher_logp": np.full((1, 5, 2), -1.0)}
    np.savez(path, **arrays)
    return str(path)


def test_trimmed_head_maps_teacher_ids_and_drops_the_rest(tmp_path) -> None:
    data = TrimmedLabels(SftData(_sft_npz(tmp_path / "d.npz", True)), torch.tensor([7, 8, 3]), 16)
    batch = data.batch(np.array([0]))
    assert batch["labels"][0, 2:4].tolist() == [0, 1]
    assert batch["teacher_ids"][0, 2].tolist() == [0, 2]  # ids 7, 3 -> head rows 0, 2
    assert batch["teacher_ids"][0, 3].tolist() == [1, -1]  # id 9 is not in the head
    assert batch["teacher_ids"].shape[1] == 4  # cropped with the rest of the batch


def _tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    return LlamaForCausalLM(cfg)


def test_logit_objective_trains_on_teacher_data_and_evaluates_with_ce(tmp_path) -> None:
    lm = CausalLMLoss(_tiny_llama())
    lm.objective = "fkl"
    batch = SftData(_sft_npz(tmp_path / "d.npz", True)).batch(np.array([0]))
    loss = lm(**batch)
    loss.backward()
    assert loss.item() > 0 and lm.model.model.layers[0].mlp.up_proj.weight.grad is not None
    lm.eval()  # validation reports CE whatever the objective, so val losses stay comparable
    ce = lm(**{k: v for k, v in batch.items() if not k.startswith("teacher")})
    assert ce.item() == pytest.approx(lm(**batch).item())


def test_logit_objective_without_teacher_data_names_the_gap(tmp_path) -> None:
    lm = CausalLMLoss(_tiny_llama())
    lm.objective = "fkl"
    batch = SftData(_sft_npz(tmp_path / "d.npz", False)).batch(np.array([0]))
    with pytest.raises(ValueError, match="teacher_ids"):
        lm(**batch)
