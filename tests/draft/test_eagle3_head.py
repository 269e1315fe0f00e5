"""The EAGLE-3 head: its training-time-test unroll is what chained decoding computes, its
checkpoint is what optimum-intel loads, and `d2t`/`t2d` map draft rows to target ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastdraft_dag.draft.eagle3 import (
    TargetTaps,
    check_layers,
    choose_layers,
    head_layers,
    init_head,
    is_eagle3_dir,
    load_head,
    rt_info_layers,
    save_head,
    tap_record,
)

KEPT = sorted({5, 17, 100, 2000, 3001, *range(200, 450)})


@pytest.fixture(scope="module")
def head(tiny_target_dir: Path):
    torch.manual_seed(0)
    h = init_head(tiny_target_dir, KEPT, seed=3)
    for p in h.midlayer.parameters():  # norms at 1.0 would hide a swapped norm
        p.data.add_(0.05 * torch.randn_like(p))
    return h.eval()


def _rope(head, x: torch.Tensor, pos: int) -> torch.Tensor:
    cos, sin = head.rotary(x, torch.tensor([[pos]]))
    a, b = x.chunk(2, dim=-1)
    return x * cos[0, 0] + torch.cat((-b, a), dim=-1) * sin[0, 0]


def _decode_reference(head, ids: torch.Tensor, feats: torch.Tensor, t: int, steps: int):
    """Chained drafting written as plain causal attention over explicit entries: the prefix
    0..t (target features) at positions 0..t, then draft step j at position t+j reading the
    previous step's state. Returns each chain step's state."""
    layer, attn = head.midlayer, head.midlayer.self_attn
    rep = attn.nh // attn.nkv
    keys, vals, outs = [], [], []

    def entry(token: int, state: torch.Tensor, pos: int) -> torch.Tensor:
        emb = head.embed_tokens(torch.tensor(token))
        x = torch.cat((layer.input_layernorm(emb), layer.hidden_norm(state)))
        q = _rope(head, attn.q_proj(x).view(attn.nh, attn.hd), pos)
        keys.append(_rope(head, attn.k_proj(x).view(attn.nkv, attn.hd), pos))
        vals.append(attn.v_proj(x).view(attn.nkv, attn.hd))
        k = torch.stack(keys, 1).repeat_interleave(rep, 0)  # [nh, n, hd]
        v = torch.stack(vals, 1).repeat_interleave(rep, 0)
        p = torch.softmax((k @ q[:, :, None])[..., 0] * attn.hd**-0.5, dim=-1)
        h = state + attn.o_proj((p[:, None] @ v)[:, 0].reshape(-1))
        return h + layer.mlp(layer.post_attention_layernorm(h))

    fc = head.fc(feats)
    for i in range(t + 1):
        state = entry(int(ids[i + 1]), fc[i], i)
    outs.append(state)
    for j in range(1, steps):
        state = entry(int(ids[t + 1 + j]), state, t + j)
        outs.append(state)
    return outs


@torch.no_grad()
def test_unroll_is_chained_decoding(head) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, 4000, (1, 14))
    feats = torch.randn(1, 14, head.fc.in_features)
    steps = 4
    states = head.unroll(ids, feats, steps)
    for t in (0, 3, 8):
        ref = _decode_reference(head, ids[0], feats[0], t, steps)
        for j in range(steps):
            torch.testing.assert_close(states[j][0, t], ref[j], rtol=1e-4, atol=1e-5)


def test_save_load_round_trip_with_d2t_t2d(head, tiny_target_dir: Path, tmp_path: Path) -> None:
    out = save_head(head, tmp_path / "head", tiny_target_dir, tap_record([0, 1, 2], 3))
    assert is_eagle3_dir(out) and not is_eagle3_dir(tiny_target_dir)
    assert head_layers(out) == [0, 1, 2]
    assert rt_info_layers(out) == [0, 1, 2]  # under 10 layers the runtime picks none itself
    back = load_head(out)
    for name, tensor in head.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    rows = torch.arange(len(KEPT))
    assert (rows + back.d2t).tolist() == KEPT  # draft row -> target id
    assert back.t2d.nonzero().flatten().tolist() == KEPT  # target id -> kept?
    assert back.kept_ids.tolist() == KEPT
    assert (out / "tokenizer.json").is_file()


def test_checkpoint_loads_in_optimum_class(head, tiny_target_dir: Path, tmp_path: Path) -> None:
    from optimum.exporters.openvino.__main__ import update_config_for_eagle3
    from optimum.exporters.openvino.model_patcher import LlamaEagle3ForCausalLM
    from transformers import AutoConfig

    out = save_head(head, tmp_path / "head", tiny_target_dir, tap_record([0, 1, 2], 3))
    config = update_config_for_eagle3(AutoConfig.from_pretrained(out))
    model, info = LlamaEagle3ForCausalLM.from_pretrained(
        out, config=config, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    state = model.state_dict()
    for name, tensor in head.state_dict().items():
        if "rotary" not in name:
            assert torch.equal(state[f"model.{name}"], tensor), name


def test_init_reads_the_target(head, tiny_target_dir: Path) -> None:
    from fastdraft_dag.draft.derived import read_state

    src = read_state(tiny_target_dir)
    emb = src["model.embed_tokens.weight"]
    assert torch.equal(head.embed_tokens.weight, emb) and not head.embed_tokens.weight.requires_grad
    assert torch.equal(head.lm_head.weight, src.get("lm_head.weight", emb)[KEPT])


def test_layer_choice() -> None:
    assert choose_layers(30) == [2, 15, 27]  # the runtime's own default
    assert choose_layers(11) == [2, 5, 8]
    assert choose_layers(3) == [0, 1, 2]
    assert choose_layers(30, [1, 5, 9]) == [1, 5, 9]
    with pytest.raises(ValueError, match="three distinct"):
        choose_layers(2)
    for bad in ([0, 1, 1], [2, 1, 0], [0, 1], [-1, 0, 1]):
        with pytest.raises(ValueError, match="eagle3.layers"):
            check_layers(bad)
    with pytest.raises(ValueError, match="exceed"):
        check_layers([0, 1, 3], num_layers=3)


@torch.no_grad()
def test_taps_are_layer_outputs_and_stop_early(tiny_target_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_target_dir, dtype=torch.float32).eval()
    ids = torch.randint(0, 4000, (2, 9))
    hs = model(ids, output_hidden_states=True).hidden_states
    taps = TargetTaps(model, [0, 1, 2])
    feats, last = taps(ids, None, final=True)
    w = model.config.hidden_size
    torch.testing.assert_close(feats[..., :w], hs[1])
    torch.testing.assert_close(feats[..., w : 2 * w], hs[2])
    assert not torch.allclose(feats[..., 2 * w :], hs[3])  # HF's last entry is after the norm
    torch.testing.assert_close(last, hs[3])
    early, none = taps(ids, None, final=False)
    assert none is None and torch.equal(early, feats)
