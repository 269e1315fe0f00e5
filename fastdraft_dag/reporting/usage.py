"""Runnable usage snippets for a release's chosen mode, in transformers and in openvino_genai.

The release card shows them and a test runs them from the release folder (substituting only the
`TARGET` / `TARGET_IR` lines), so what a user copies is what was checked: the chosen mode's greedy
output equals plain decoding. The mode comes as plain data (`ModeChoice.to_dict()["chosen"]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SD, EAGLE3, LOOKUP = "sd", "eagle3", "prompt_lookup"
PROMPT = "def fibonacci(n):"
MAX_NEW_TOKENS = 64
# transformers' assisted generation without a threshold: up to this many draft tokens per step.
HF_MAX_ASSISTANT_TOKENS = 20


def hf_generation_settings(chosen: Mapping[str, Any], ngram: int) -> dict[str, Any]:
    """The chosen mode as transformers `GenerationConfig` keys, for the draft's generation_config.

    transformers reads `num_assistant_tokens*` and `assistant_confidence_threshold` from the
    assistant's own config; a fixed k needs the constant schedule and the threshold off (its
    default 0.4 would cut drafts short). Prompt lookup's keys are the target's `generate` ones,
    written here so the folder records the whole choice.
    """
    if chosen["mode"] == SD:
        threshold = chosen.get("confidence_threshold")
        if threshold is not None:
            return {
                "num_assistant_tokens": HF_MAX_ASSISTANT_TOKENS,
                "num_assistant_tokens_schedule": "constant",
                "assistant_confidence_threshold": float(threshold),
            }
        return {
            "num_assistant_tokens": int(chosen["k"]),
            "num_assistant_tokens_schedule": "constant",
            "assistant_confidence_threshold": 0.0,
        }
    if chosen["mode"] == LOOKUP:
        return {"prompt_lookup_num_tokens": int(chosen["k"]), "max_matching_ngram_size": ngram}
    return {}


def transformers_snippet(chosen: Mapping[str, Any], target: str, ngram: int) -> str:
    """Assisted generation with this folder as the assistant (SD), prompt lookup, or plain."""
    extra = ""
    lines = [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'TARGET = "{target}"  # the target: hub id or local directory',
        "",
        "tokenizer = AutoTokenizer.from_pretrained(TARGET)",
        "model = AutoModelForCausalLM.from_pretrained(TARGET)",
    ]
    if chosen["mode"] == EAGLE3:
        lines.insert(0, "# transformers has no EAGLE-3 decoding: this runs the target alone. The")
        lines.insert(1, "# head at this folder's root (optimum-intel / SpecForge layout) is for")
        lines.insert(2, "# openvino_genai (below), SGLang or vLLM (speculative algorithm EAGLE3).")
    if chosen["mode"] == SD:
        lines.append('draft = AutoModelForCausalLM.from_pretrained(".")  # this folder')
        extra = ", assistant_model=draft  # its settings: generation_config.json"
    elif chosen["mode"] == LOOKUP:
        extra = f", prompt_lookup_num_tokens={chosen['k']}, max_matching_ngram_size={ngram}"
    lines += [
        f'inputs = tokenizer("{PROMPT}", return_tensors="pt")',
        "out = model.generate(",
        f"    **inputs, do_sample=False, max_new_tokens={MAX_NEW_TOKENS}{extra}",
        ")",
        'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))',
    ]
    return "\n".join(lines)


def openvino_snippet(chosen: Mapping[str, Any], target: str, device: str, ngram: int) -> str:
    """openvino_genai with `draft-ir/` as the draft model (SD), prompt lookup, or plain."""
    lines = [
        "import openvino_genai as ov_genai",
        "",
        f'TARGET_IR = "target-ir"  # optimum-cli export openvino -m {target} target-ir',
        "",
    ]
    if chosen["mode"] in (SD, EAGLE3):
        what = "EAGLE-3 head IR (rt_info eagle3_mode)" if chosen["mode"] == EAGLE3 else "draft IR"
        lines += [
            f'draft = ov_genai.draft_model("draft-ir", "{device}")  # this folder\'s {what}',
            f'pipe = ov_genai.LLMPipeline(TARGET_IR, "{device}", draft_model=draft)',
            "config = pipe.get_generation_config()",
        ]
        threshold = chosen.get("confidence_threshold")
        lines.append(
            f"config.assistant_confidence_threshold = {threshold:g}"
            if threshold is not None
            else f"config.num_assistant_tokens = {chosen['k']}"
        )
    elif chosen["mode"] == LOOKUP:
        lines += [
            f'pipe = ov_genai.LLMPipeline(TARGET_IR, "{device}", prompt_lookup=True)',
            "config = pipe.get_generation_config()",
            f"config.num_assistant_tokens = {chosen['k']}",
            f"config.max_ngram_size = {ngram}",
        ]
    else:
        lines += [
            f'pipe = ov_genai.LLMPipeline(TARGET_IR, "{device}")',
            "config = pipe.get_generation_config()",
        ]
    lines += [
        "config.do_sample = False",
        f"config.max_new_tokens = {MAX_NEW_TOKENS}",
        f'print(pipe.generate("{PROMPT}", config))',
    ]
    return "\n".join(lines)
