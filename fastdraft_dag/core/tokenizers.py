"""Is a draft's tokenizer the target's? Speculative decoding is wrong without it, silently."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fastdraft_dag.core.errors import InputError

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


DECODING_ROLES = ("bos_token", "eos_token")


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
    roles = {k: str(v) for k, v in tok.special_tokens_map.items()}
    return {
        "vocabulary": tok.get_vocab(),
        "start and stop tokens": {k: roles.get(k) for k in DECODING_ROLES},
        "other special-token roles": {k: v for k, v in roles.items() if k not in DECODING_ROLES},
        "added tokens": sorted((i, str(t)) for i, t in tok.added_tokens_decoder.items()),
        "chat template": tok.chat_template or "",
    }


# What speculative decoding reads: the draft proposes token ids the target verifies, so these
# must be equal. The chat template only renders prompts, and every mode renders them once with
# the target's tokenizer: a draft whose template differs (Qwen2.5-Coder 0.5B vs 1.5B differ in
# tool-calling text only) decodes correctly, so that is a warning, not a refusal.
# Of the special-token roles decoding reads only these two (BOS starts a sequence, EOS stops
# it); unk and pad are never emitted or read by greedy or speculative decoding, so a draft that
# names them differently (a hub tokenizer with no unk token beside a converted one) decodes the same.
DECODING_FIELDS = ("vocabulary", "start and stop tokens", "added tokens")


@dataclass(frozen=True)
class TokenizerComparison:
    """`blocking`: differences that make SD output wrong; `warnings`: ones decoding never reads."""

    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def compare_tokenizers(candidate_dir: Path, target_dir: Path) -> TokenizerComparison:
    """What differs between two tokenizers, in words, split by whether decoding reads it."""
    a, b = _describe(Path(candidate_dir)), _describe(Path(target_dir))
    out = TokenizerComparison()
    for name, va in a.items():
        vb = b[name]
        if va == vb:
            continue
        if name == "vocabulary":
            extra, missing = set(va) - set(vb), set(vb) - set(va)
            moved = sum(1 for t in set(va) & set(vb) if va[t] != vb[t])
            text = (
                f"vocabulary: {len(va)} vs {len(vb)} tokens, {len(extra)} extra, "
                f"{len(missing)} missing, {moved} with other ids"
            )
        else:
            # a template is compared as the text it is: dumping it again escapes its escapes
            as_text = (lambda v: v) if isinstance(va, str) else json.dumps
            text = f"{name}: {first_difference(as_text(va), as_text(vb))}"
        (out.blocking if name in DECODING_FIELDS else out.warnings).append(text)
    return out


def require_same_tokens(candidate_dir: Path, target_dir: Path, what: str) -> list[str]:
    """Refuse a draft whose token ids or special tokens are not the target's (its acceptance
    and its SD output would be meaningless); return the warnings (a chat template)."""
    found = compare_tokenizers(candidate_dir, target_dir)
    if found.blocking:
        raise InputError(
            f"{what} at {candidate_dir} does not share the target's tokens ({target_dir}): "
            + "; ".join(found.blocking)
        )
    return [f"{what} at {candidate_dir}: {w} (decoding unaffected)" for w in found.warnings]


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
