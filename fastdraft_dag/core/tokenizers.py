"""Is a draft's tokenizer the target's? Speculative decoding is wrong without it, silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fastdraft_dag.core.errors import InputError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def _describe(tokenizer_dir: Path) -> dict[str, object]:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as exc:  # a truncated tokenizer.json fails inside the Rust parser
        files = ", ".join(n for n in TOKENIZER_FILES if (Path(tokenizer_dir) / n).is_file())
        raise InputError(
            f"tokenizer in {str(tokenizer_dir)!r} cannot be loaded ({type(exc).__name__}: "
            f"{str(exc)[:200]}); its files: {files or 'none'}"
        ) from exc
    return {
        "vocabulary": tok.get_vocab(),
        "special tokens": {k: str(v) for k, v in tok.special_tokens_map.items()},
        "added tokens": sorted((i, str(t)) for i, t in tok.added_tokens_decoder.items()),
        "chat template": tok.chat_template or "",
    }


def tokenizer_differences(candidate_dir: Path, target_dir: Path) -> list[str]:
    """What differs between two tokenizers, in words; empty when they are identical."""
    a, b = _describe(Path(candidate_dir)), _describe(Path(target_dir))
    out = []
    for field, va in a.items():
        vb = b[field]
        if va == vb:
            continue
        if field == "vocabulary":
            extra, missing = set(va) - set(vb), set(vb) - set(va)
            moved = sum(1 for t in set(va) & set(vb) if va[t] != vb[t])
            out.append(
                f"vocabulary: {len(va)} vs {len(vb)} tokens, {len(extra)} extra, "
                f"{len(missing)} missing, {moved} with other ids"
            )
        else:
            out.append(f"{field}: {first_difference(json.dumps(va), json.dumps(vb))}")
    return out


def first_difference(a: str, b: str, context: int = 40) -> str:
    """Where two texts part, with a little context on each side: two long templates that
    differ in one clause otherwise print as identical excerpts."""
    i = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - context)
    return (
        f"differ at character {i} of {len(a)} vs {len(b)}: "
        f"{a[lo : i + context]!r} vs {b[lo : i + context]!r}"
    )


def copy_tokenizer_files(src_dir: Path, out_dir: Path) -> list[str]:
    """Copy tokenizer, special tokens, chat template: the draft must speak the target's tokens."""
    copied = []
    for name in TOKENIZER_FILES:
        if (Path(src_dir) / name).is_file():
            shutil.copy2(Path(src_dir) / name, Path(out_dir) / name)
            copied.append(name)
    return copied
