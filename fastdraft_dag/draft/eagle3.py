"""EAGLE-3 draft heads: one decoder layer that reads the target's own hidden states.

A standalone draft has to rebuild from the tokens what the target has already computed; an
EAGLE-3 head (arXiv 2503.01840) gets it: `fc` projects the target's hidden states at three depths
(low, middle, high) to one state, and a single Llama decoder layer whose attention reads
[input_layernorm(embedding of the next token), hidden_norm(state)] predicts the token after
next over a trimmed draft vocabulary. Later draft steps feed the layer's own output back in
place of the target's features, which is what training-time test (`unroll`) imitates.

The layout is the one optimum-intel exports (`LlamaForCausalLMEagle3`, tensors under `model.`)
and openvino_genai runs: the runtime copies the target's embedding into the head (ours stays
frozen at the target's), moves `fc` into the target graph (so it is a bias-free Linear applied
straight to the concatenated states), feeds the decoder layer's output before the final norm to
the next step, and maps draft rows to target ids with `d2t` (`target = row + d2t[row]`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fastdraft_dag.core.files import atomic_path
from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.draft.derived import read_state

KV = tuple[torch.Tensor, torch.Tensor]
ARCHITECTURE = "LlamaForCausalLMEagle3"  # the SpecForge layout optimum-intel 2.1 accepts
LAYERS_FILE = "eagle3_layers.json"  # which target layers the head was trained on
# Keys copied from the target's config: the head has the target's width, heads and RoPE.
TARGET_KEYS = (
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rms_norm_eps",
    "max_position_embeddings",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "hidden_act",
)


def is_eagle3_dir(model_dir: Path) -> bool:
    """True for a directory holding an EAGLE-3 head (by its config's architecture)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return False
    return ARCHITECTURE in (json.loads(path.read_text()).get("architectures") or [])


MIN_AUTO_LAYERS = 10  # openvino_genai picks the taps itself only for targets this deep


def runtime_default_layers(num_layers: int) -> list[int] | None:
    """openvino_genai's automatic taps: outputs of decoder layers 2, N/2 and N-3 (N >= 10)."""
    return [2, num_layers // 2, num_layers - 3] if num_layers >= MIN_AUTO_LAYERS else None


def choose_layers(num_layers: int, configured: Sequence[int] | None = None) -> list[int]:
    """The three target layers a head reads: the configured ones, else the runtime's default,
    else (under 10 layers, where the runtime picks none) the first, middle and last."""
    if configured is not None:
        return check_layers(configured, num_layers)
    if num_layers < 3:
        raise ValueError(
            f"an EAGLE-3 head taps three distinct target layers; the target has {num_layers}"
        )
    auto = runtime_default_layers(num_layers)
    return auto if auto is not None else [0, num_layers // 2, num_layers - 1]


def check_layers(layers: Sequence[int], num_layers: int | None = None) -> list[int]:
    """Three distinct ascending layer ids below `num_layers`: the runtime matches one residual
    Add per id and refuses a repeated one ("Number of extracted hidden states does not match")."""
    ids = [int(i) for i in layers]
    if len(ids) != 3 or ids[0] < 0 or not ids[0] < ids[1] < ids[2]:
        raise ValueError(f"eagle3.layers must be three distinct ascending layer ids, got {layers}")
    if num_layers is not None and ids[2] >= num_layers:
        raise ValueError(f"eagle3.layers {ids} exceed the target's {num_layers} layers")
    return ids


def head_config(target_dir: Path, draft_vocab: int) -> dict[str, Any]:
    """The head's config.json: a one-layer Llama of the target's shape + EAGLE-3 keys."""
    src = json.loads((Path(target_dir) / "config.json").read_text())
    cfg = {k: src[k] for k in TARGET_KEYS if k in src}
    cfg.setdefault("head_dim", src["hidden_size"] // src["num_attention_heads"])
    cfg.setdefault("num_key_value_heads", src["num_attention_heads"])
    return {
        **cfg,
        "architectures": [ARCHITECTURE],
        "model_type": "llama",
        "num_hidden_layers": 1,
        "vocab_size": int(src["vocab_size"]),
        "draft_vocab_size": int(draft_vocab),
        "target_hidden_size": int(src["hidden_size"]),
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attention(nn.Module):
    """Llama attention over 2H inputs ([embedding, state]) with training-time-test keys.

    `cache` holds (keys, values) of the unroll's earlier steps, step 0 first. Step j's query at
    position t reads step 0's keys causally (the prefix the target verified) and the keys of
    steps 1..j at t only: at decode time those are the draft's own tokens t+1..t+j.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        h, self.hd = cfg.hidden_size, cfg.head_dim
        self.nh, self.nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.q_proj = nn.Linear(2 * h, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(2 * h, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(2 * h, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, h, bias=False)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x.view(*x.shape[:2], n, self.hd).transpose(1, 2)  # [B, n, T, hd]

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: list[KV]
    ) -> tuple[torch.Tensor, list[KV]]:  # noqa: D102
        rep = self.nh // self.nkv
        q = self._heads(self.q_proj(x), self.nh)
        k = self._heads(self.k_proj(x), self.nkv)
        v = self._heads(self.v_proj(x), self.nkv)
        cos, sin = cos[:, None], sin[:, None]
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        cache = [*cache, (k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1))]
        scale = self.hd**-0.5
        (k0, v0), later = cache[0], cache[1:]
        t = q.shape[2]
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        scores = [(q @ k0.transpose(-1, -2) * scale).masked_fill(~causal, float("-inf"))]
        scores += [(q * ki).sum(-1, keepdim=True) * scale for ki, _ in later]
        probs = torch.softmax(torch.cat(scores, dim=-1).float(), dim=-1).to(q.dtype)
        out = probs[..., :t] @ v0
        for i, (_, vi) in enumerate(later):
            out = out + probs[..., t + i : t + i + 1] * vi
        out = out.transpose(1, 2).reshape(*x.shape[:2], self.nh * self.hd)
        return self.o_proj(out), cache


class MLP(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        h, i = cfg.hidden_size, cfg.intermediate_size
        self.gate_proj = nn.Linear(h, i, bias=False)
        self.up_proj = nn.Linear(h, i, bias=False)
        self.down_proj = nn.Linear(i, h, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class MidLayer(nn.Module):
    def __init__(self, cfg: Any) -> None:
        super().__init__()
        eps = cfg.rms_norm_eps
        self.hidden_norm = RMSNorm(cfg.hidden_size, eps)
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps)
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, emb, state, cos, sin, cache: list[KV]):  # noqa: D102
        x = torch.cat((self.input_layernorm(emb), self.hidden_norm(state)), dim=-1)
        attn, cache = self.self_attn(x, cos, sin, cache)
        h = state + attn
        return h + self.mlp(self.post_attention_layernorm(h)), cache


class Eagle3Head(nn.Module):
    """The head; `state_dict()` names are optimum's without its `model.` prefix."""

    def __init__(self, config: dict[str, Any]) -> None:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        super().__init__()
        self.config = LlamaConfig(**config)
        cfg = self.config
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.embed_tokens.weight.requires_grad_(False)  # the runtime swaps in the target's
        self.fc = nn.Linear(3 * cfg.target_hidden_size, cfg.hidden_size, bias=False)
        self.midlayer = MidLayer(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.draft_vocab_size, bias=False)
        self.register_buffer("d2t", torch.zeros(cfg.draft_vocab_size, dtype=torch.long))
        self.register_buffer("t2d", torch.zeros(cfg.vocab_size, dtype=torch.bool))
        self.rotary = LlamaRotaryEmbedding(config=cfg)

    def get_input_embeddings(self) -> nn.Embedding:  # the trainer's model interface
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    @property
    def kept_ids(self) -> torch.Tensor:
        """Target id of each draft row (ascending)."""
        return torch.arange(len(self.d2t), device=self.d2t.device) + self.d2t

    def unroll(
        self, input_ids: torch.Tensor, features: torch.Tensor, steps: int
    ) -> list[torch.Tensor]:
        """Training-time test: the draft's pre-norm states for `steps` chained draft steps.

        Step j at position t reads the token x[t+1+j] (teacher-forced: KD answers are the
        target's own tokens) and, for j = 0, fc(target features at t), else its own state of
        step j-1; it sits at draft position t+j and predicts x[t+2+j]. Positions past the end
        read token 0; the caller masks them out.
        """
        b, t = input_ids.shape
        state = self.fc(features.to(self.fc.weight.dtype))
        cache: list[KV] = []
        outs = []
        base = torch.arange(t, device=input_ids.device)
        for j in range(steps):
            ids = torch.nn.functional.pad(input_ids[:, 1 + j :], (0, 1 + j), value=0)[:, :t]
            emb = self.embed_tokens(ids).to(state.dtype)
            cos, sin = self.rotary(state, (base + j)[None].expand(b, t))
            state, cache = self.midlayer(emb, state, cos, sin, cache)
            outs.append(state)
        return outs

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """Draft-vocabulary logits of pre-norm states."""
        return self.lm_head(self.norm(state))


def init_head(target_dir: Path, kept_ids: Sequence[int], seed: int = 0) -> Eagle3Head:
    """A fresh head on the target: its embedding (frozen), its final norm and its LM head rows
    at `kept_ids` (the head starts by reading states the way the target does); fc and the
    decoder layer random (std 0.02, as Llama inits)."""
    kept = np.asarray(kept_ids, dtype=np.int64)
    torch.manual_seed(seed)
    head = Eagle3Head(head_config(target_dir, len(kept)))
    for module in head.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    src = read_state(target_dir)
    emb = src["model.embed_tokens.weight"].float()
    with torch.no_grad():
        head.embed_tokens.weight.copy_(emb)
        head.norm.weight.copy_(src["model.norm.weight"].float())
        head.lm_head.weight.copy_(src.get("lm_head.weight", emb).float()[torch.from_numpy(kept)])
        head.d2t.copy_(torch.from_numpy(kept - np.arange(len(kept))))
        head.t2d.zero_()
        head.t2d[torch.from_numpy(kept)] = True
    return head


def save_head(
    head: Eagle3Head, out: Path, tokenizer_dir: Path, taps: dict[str, Any] | None = None
) -> Path:
    """config.json + model.safetensors in optimum-intel's layout (`model.` prefix) + the
    tokenizer + the taps (`{"layers": [...], "target_layers": N}`, see `tap_record`); written in
    place (callers own atomicity: artifact dirs)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {f"model.{k}": v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    state = {k: v for k, v in state.items() if "rotary" not in k}
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    cfg = head.config.to_dict()
    cfg["architectures"] = [ARCHITECTURE]
    (out / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    if taps is not None:
        (out / LAYERS_FILE).write_text(json.dumps(taps))
    if Path(tokenizer_dir).resolve() != out.resolve():
        copy_tokenizer_files(Path(tokenizer_dir), out)
    return out


def tap_record(layers: Sequence[int], target_layers: int) -> dict[str, Any]:
    """What a head directory records of the target layers it reads (LAYERS_FILE)."""
    return {"layers": check_layers(layers, target_layers), "target_layers": int(target_layers)}


def head_taps(model_dir: Path) -> dict[str, Any] | None:
    """A head directory's tap record (None: not recorded)."""
    path = Path(model_dir) / LAYERS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def rt_info_layers(model_dir: Path) -> list[int] | None:
    """The `hidden_layers_list` a head's IR must carry: its layers, unless they are exactly what
    the runtime would pick itself for that target."""
    taps = head_taps(model_dir)
    if taps is None:
        raise ValueError(f"{model_dir}: an EAGLE-3 head without {LAYERS_FILE}")
    default = runtime_default_layers(int(taps["target_layers"]))
    return None if taps["layers"] == default else list(taps["layers"])


def load_head(model_dir: Path) -> Eagle3Head:
    """A saved head, fp32, eval mode (weights from safetensors only)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    head = Eagle3Head(cfg)
    state = {k.removeprefix("model."): v for k, v in read_state(Path(model_dir)).items()}
    missing, unexpected = head.load_state_dict(state, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    if missing or unexpected:
        raise ValueError(f"{model_dir}: not an EAGLE-3 head ({missing=}, {unexpected=})")
    return head.float().eval()


def head_layers(model_dir: Path) -> list[int] | None:
    """The target layers a saved head reads (None: not recorded)."""
    taps = head_taps(model_dir)
    return None if taps is None else list(taps["layers"])


def copy_head(src: Path, dst: Path) -> None:
    """Every file of a head directory (release folders keep the HF layout for SGLang/vLLM)."""
    shutil.copytree(src, dst, dirs_exist_ok=True)


class _Enough(Exception):
    """Raised by the last tap's hook when nothing after it is needed (skips the rest)."""


class TargetTaps(nn.Module):
    """The frozen target, read the way the runtime reads it: the outputs (residual stream) of
    three decoder layers, concatenated, and optionally its final normed hidden states.

    Hooks on the layers themselves, not HF `hidden_states`: the last entry of that tuple is the
    final norm's output, so a tap of the last layer (small targets) would read the wrong tensor.
    Without `final`, the forward stops at the deepest tap (N-3 of N layers: ~10% saved).
    """

    def __init__(self, target: nn.Module, layers: Sequence[int]) -> None:
        super().__init__()
        self.target = target.eval().requires_grad_(False)
        self.layers = check_layers(layers, target.config.num_hidden_layers)
        self._out: dict[int, torch.Tensor] = {}
        self._stop_at: int | None = None
        blocks = target.get_decoder().layers
        for i in self.layers:
            blocks[i].register_forward_hook(self._hook(i))

    def _hook(self, i: int):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self._out[i] = output[0] if isinstance(output, tuple) else output
            if i == self._stop_at:
                raise _Enough

        return hook

    def train(self, mode: bool = True) -> TargetTaps:  # the target stays in eval mode
        return self

    @torch.no_grad()
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, final: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features [B, T, 3H], final hidden states [B, T, H] or None)."""
        self._out.clear()
        self._stop_at = None if final else self.layers[-1]
        last = None
        with contextlib.suppress(_Enough):
            last = self.target.get_decoder()(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).last_hidden_state
        feats = torch.cat([self._out[i] for i in self.layers], dim=-1)
        self._out.clear()
        return feats, last

    def head_logits(self, hidden: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """The target's logits over the draft vocabulary rows only (renormalised by the caller)."""
        weight = self.target.get_output_embeddings().weight
        return hidden @ weight[kept].t()
