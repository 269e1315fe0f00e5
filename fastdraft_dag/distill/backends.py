"""Generation backends for the KD dataset: PyTorch `generate` and OpenVINO GenAI continuous batching.

A backend turns a list of requests (prompt ids, temperature, seed) into new token ids per
request. It knows nothing about rows, files or resume; `kd.generate_responses` does that. The
OpenVINO backend runs the target exported as an fp32 IR (same weights as PyTorch; the f32
precision hint keeps the arithmetic fp32 too), and its scheduler keeps every slot busy: sequences
that stop early are replaced at once instead of idling until the longest one in a batch ends.
On 2 cores this is several times faster than batched `generate` (`make bench-kd`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any, Protocol

from fastdraft_dag.training.backends import bf16_native

BACKENDS = ("torch", "openvino")
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
KV_CACHE_GB = 1  # OpenVINO's paged KV cache; 135M target x 32 sequences x 640 tokens needs ~0.5


@dataclass(frozen=True)
class Request:
    ids: list[int]
    temperature: float
    seed: int


class Backend(Protocol):
    name: str

    def generate(self, requests: Sequence[Request]) -> list[list[int]]: ...


def request_seed(row_id: str, seed: int) -> int:
    """Per-row sampling seed: a row regenerated alone (after a crash) samples the same way."""
    digest = hashlib.sha1(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ---------------------------------------------------------------- PyTorch


def resolve_dtype(dtype: str) -> str:
    """`auto` picks bf16 where the CPU has native bf16 matmuls, fp32 elsewhere."""
    if dtype == "auto":
        return "bf16" if bf16_native("cpu") else "fp32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {sorted(DTYPES)} or 'auto'")
    return dtype


def load_target(target_dir: Path, dtype: str, threads: int) -> tuple[Any, Any]:
    """Model in eval mode at the requested precision, and its tokenizer set up for left padding."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = resolve_dtype(dtype)
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(target_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(target_dir, dtype=getattr(torch, DTYPES[dtype]))
    return model.eval(), tokenizer


def pad_batch(seqs: list[list[int]], pad_id: int, left: bool = True) -> tuple[Any, Any]:
    """(ids, attention mask) tensors; left padding for generation, right keeps positions 0-based."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


def torch_generation_config(max_new_tokens: int, temperature: float, eos: list[int], pad_id: int):
    """A fresh config: the target's own sampling defaults (top_p, ...) must not leak in."""
    from transformers import GenerationConfig

    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_p=None,
        top_k=None,
        eos_token_id=eos,
        pad_token_id=pad_id,
    )


def generate_batch(model: Any, seqs: list[list[int]], config: Any, pad_id: int) -> list[list[int]]:
    """New token ids per sequence (padding included after an early stop)."""
    import torch

    ids, mask = pad_batch(seqs, pad_id)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    return out[:, ids.shape[1] :].tolist()


class TorchBackend:
    """Static batches of `batch_size`, length-sorted, one temperature per batch."""

    name = "torch"

    def __init__(
        self, model: Any, eos: list[int], pad_id: int, max_new_tokens: int, batch_size: int
    ) -> None:
        self.model, self.eos, self.pad_id = model, eos, pad_id
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def _groups(self, requests: Sequence[Request]) -> Iterator[list[int]]:
        order = sorted(
            range(len(requests)), key=lambda i: (requests[i].temperature, len(requests[i].ids))
        )
        for _, same in groupby(order, key=lambda i: requests[i].temperature):
            same = list(same)
            for s in range(0, len(same), self.batch_size):
                yield same[s : s + self.batch_size]

    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        import torch

        out: list[list[int]] = [[] for _ in requests]
        for idx in self._groups(requests):
            first = requests[idx[0]]
            config = torch_generation_config(
                self.max_new_tokens, first.temperature, self.eos, self.pad_id
            )
            torch.manual_seed(first.seed)  # batch composition decides samples: see module doc
            new = generate_batch(self.model, [requests[i].ids for i in idx], config, self.pad_id)
            for i, ids in zip(idx, new, strict=True):
                out[i] = ids
        return out


# ---------------------------------------------------------------- OpenVINO GenAI


def ov_generation_config(max_new_tokens: int, request: Request, eos: list[int]) -> Any:
    """Pure temperature sampling (no top-k/top-p) or greedy, stopping at every end-of-turn id."""
    import openvino_genai as ov_genai

    config = ov_genai.GenerationConfig()
    config.max_new_tokens = max_new_tokens
    config.apply_chat_template = False  # prompts arrive already templated and tokenized
    config.set_eos_token_id(eos[0])
    config.stop_token_ids = set(eos)
    config.do_sample = request.temperature > 0
    if config.do_sample:
        config.temperature = request.temperature
        config.rng_seed = request.seed
    return config


class OpenVINOBackend:
    """`ContinuousBatchingPipeline` over the target's IR; `max_seqs` sequences in flight.

    Driven step by step (`add_request`, `step`) rather than by one `generate` call per chunk, so
    a Ctrl-C lands within one decoding step instead of after the whole chunk (same outputs).
    """

    name = "openvino"

    def __init__(
        self, ir_dir: Path, eos: list[int], max_new_tokens: int, max_seqs: int, threads: int
    ) -> None:
        import openvino_genai as ov_genai

        if not (Path(ir_dir) / "openvino_model.xml").is_file():
            raise FileNotFoundError(f"KD backend 'openvino': no openvino_model.xml in {ir_dir}")
        scheduler = ov_genai.SchedulerConfig()
        scheduler.max_num_seqs = max_seqs
        scheduler.cache_size = KV_CACHE_GB
        scheduler.dynamic_split_fuse = True
        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            props["INFERENCE_NUM_THREADS"] = threads
        self.pipe = ov_genai.ContinuousBatchingPipeline(str(ir_dir), scheduler, "CPU", props)
        self.eos, self.max_new_tokens = eos, max_new_tokens

    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        import numpy as np
        import openvino as ov

        handles = [
            self.pipe.add_request(
                i,
                ov.Tensor(np.asarray([r.ids], dtype=np.int64)),
                ov_generation_config(self.max_new_tokens, r, self.eos),
            )
            for i, r in enumerate(requests)
        ]
        try:  # one token per sequence a step: Python (and Ctrl-C) runs between steps
            while self.pipe.has_non_finished_requests():
                self.pipe.step()
        except BaseException:
            self._cancel(handles)
            raise
        outputs = [h.read_all() for h in handles]
        return [list(o[0].generated_ids) if o else [] for o in outputs]

    def _cancel(self, handles: list[Any]) -> None:
        """Free what the stopped requests hold, so the pipeline can be used (or closed) cleanly."""
        for h in handles:
            h.cancel()
        while self.pipe.has_non_finished_requests():
            self.pipe.step()
