"""The one prompt renderer: what KD generation, alignment, offline evaluation and the live
benchmark all feed the models, so the draft is trained on exactly the ids it is measured on.

A row is `{"prompt": str, "chat": bool}` (chat defaults to true: the targets are instruction
models addressed through their chat template). Chat rows go through the target's chat template
with the generation prompt; a target without one gets `FALLBACK_TEMPLATE`. Raw rows (text
completion) are the text itself. A chat template writes its own special tokens, so none are added
to it; raw text and the fallback get the tokenizer's usual ones (BOS where the model has one).
"""

from __future__ import annotations

from typing import Any

FALLBACK_TEMPLATE = "User: {prompt}\nAssistant:"


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def is_chat(row: dict[str, Any]) -> bool:
    return bool(row.get("chat", True))


def render_prompt(tokenizer: Any, row: dict[str, Any]) -> str:
    """The exact text the models are conditioned on: chat-templated, fallback, or raw."""
    if not is_chat(row):
        return row["prompt"]
    if has_chat_template(tokenizer):
        messages = [{"role": "user", "content": row["prompt"]}]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return FALLBACK_TEMPLATE.format(prompt=row["prompt"])


def template_name(tokenizer: Any, row: dict[str, Any]) -> str:
    """`chat`, `fallback` or `raw`: which rendering a row gets (reported in metadata)."""
    if not is_chat(row):
        return "raw"
    return "chat" if has_chat_template(tokenizer) else "fallback"


def encode_prompt(tokenizer: Any, row: dict[str, Any]) -> list[int]:
    """Prompt token ids, exactly as every model in the pipeline sees them."""
    text = render_prompt(tokenizer, row)
    add_special = template_name(tokenizer, row) != "chat"
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
