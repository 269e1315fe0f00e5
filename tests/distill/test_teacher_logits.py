"""The teacher pass: the target's top-k at every label position, batched without changing them."""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from fastdraft_dag.distill.teacher_logits import teacher_topk


def test_teacher_topk_is_the_targets_distribution_at_each_label_position() -> None:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(0)
    lengths, width = [5, 9, 3, 7, 6], 10
    ids = np.zeros((5, width), dtype=np.int32)
    labels = np.full((5, width), -100)
    mask = np.zeros((5, width), dtype=np.int8)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(1, 32, n)
        mask[i, :n] = 1
        labels[i, 2:n] = ids[i, 2:n]  # a 2-token prompt, then the answer
    arrays = {"train_input_ids": ids, "train_labels": labels, "train_attention_mask": mask}
    out = teacher_topk(arrays, lambda x, m: model(input_ids=x, attention_mask=m).logits, 4, 2)
    for i, n in enumerate(lengths):  # each row alone, unpadded
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor(ids[i : i + 1, :n]).long()).logits[0], -1)
        want_logp, want_ids = logp[: n - 1].topk(4, dim=-1)
        assert (out["train_teacher_ids"][i, 2:n] == want_ids[1:].numpy()).all()
        np.testing.assert_allclose(
            out["train_teacher_logp"][i, 2:n], want_logp[1:].numpy(), atol=2e-3
        )
        assert (
            not out["train_teacher_ids"][i, :2].any() and not out["train_teacher_ids"][i, n:].any()
        )
