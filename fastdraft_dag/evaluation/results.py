"""What the benchmark is run on and what it ships: prompt sets, DuckDB rows, the release folder.

Plain functions with known answers; the `benchmark_tables` asset only wires them together. No
Dagster here.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fastdraft_dag.core.files import replace_dir, write_json_atomic
from fastdraft_dag.core.tokenizers import copy_tokenizer_files
from fastdraft_dag.draft.eagle3 import LAYERS_FILE
from fastdraft_dag.evaluation.live import LiveRow
from fastdraft_dag.evaluation.modes import DRAFTED, ModeChoice
from fastdraft_dag.openvino.ir_scoring import ir_model_file
from fastdraft_dag.prompts.eval_sets import EVAL_FAMILIES, eval_prompts, load_prompts_jsonl
from fastdraft_dag.reporting.usage import hf_generation_settings

GENERATION_CONFIG = "generation_config.json"
RELEASE_JSON = "release.json"


def bench_prompt_set(
    per_family: int,
    prompt_files: Sequence[str | Path] = (),
    per_user_task: int | None = None,
    setting: str = "bench.prompts_per_family",
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The built-in four families (``per_family`` prompts each) plus the users' JSONL rows.

    ``per_user_task`` caps the user rows kept per task (the live benchmark's budget); None keeps
    them all. Returns (rows, malformed rows per file). A file that is missing or holds no valid
    row raises ValueError naming it (``prompts.load_prompts_jsonl``); an empty set raises too,
    naming the settings (``setting`` is the name of ``per_family``'s), because every metric
    would be an average over nothing.
    """
    if per_family < 0:
        raise ValueError(f"{setting}: {per_family}, must be >= 0")
    rows = [p for fam in EVAL_FAMILIES for p in eval_prompts(fam, per_family)]
    malformed: dict[str, int] = {}
    for path in prompt_files:
        user, dropped = load_prompts_jsonl(Path(path))
        malformed[str(path)] = dropped
        rows += _cap_per_task(user, per_user_task)
    if not rows:
        raise ValueError(
            f"the benchmark prompt set is empty: {setting}={per_family} and no user rows "
            f"(bench.prompt_files={list(map(str, prompt_files))})"
        )
    return rows, malformed


def _cap_per_task(rows: list[dict[str, Any]], cap: int | None) -> list[dict[str, Any]]:
    """The first ``cap`` rows of each task, file order kept; all of them when cap is None."""
    if cap is None:
        return rows
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        seen[row["task"]] = seen.get(row["task"], 0) + 1
        if seen[row["task"]] <= cap:
            out.append(row)
    return out


def wallclock_db_rows(
    rows: Iterable[LiveRow], draft_precision: str, target_precision: str
) -> list[dict[str, Any]]:
    """Live rows shaped for DuckDB ``benchmark_wallclock`` (rows of older results may lack the
    newer keys, hence ``.get``).

    Keeps the older columns where they mean the same: ``plain_tok_s`` is plain decoding's tokens/s
    on the same task (in the passes beside the row's mode, when the row says), ``sd_tok_s`` the row's own tokens/s for a drafted mode (SD, prompt lookup,
    reference draft). ``draft_precision`` applies to the modes that run a draft IR.
    """
    rows = [dict(r) for r in rows]
    plain = {r["task"]: r.get("tok_s") for r in rows if r.get("mode") == "plain"}
    out = []
    for r in rows:
        drafted = r.get("mode") in ("sd", "reference_draft")
        out.append(
            {
                **r,
                "draft_precision": draft_precision if drafted else None,
                "target_precision": target_precision,
                "plain_tok_s": r.get("plain_tok_s", plain.get(r["task"])),
                "sd_tok_s": r.get("tok_s") if r.get("mode") != "plain" else None,
            }
        )
    return out


def sd_generation_settings(choice: ModeChoice) -> dict[str, Any]:
    """The generation-config keys the release's draft IR gets: SD's settings, only if SD won.

    A fixed k sets ``num_assistant_tokens``; a confidence threshold sets
    ``assistant_confidence_threshold`` and clears k (openvino_genai refuses both at once).
    Prompt lookup or plain decoding winning means the draft is not recommended: nothing is set.
    """
    chosen = choice.chosen
    if chosen.mode not in DRAFTED:
        return {}
    if chosen.confidence_threshold is not None:
        return {
            "num_assistant_tokens": 0,
            "assistant_confidence_threshold": chosen.confidence_threshold,
        }
    if chosen.k is None:
        raise ValueError(f"chosen SD mode {chosen.label} has neither a k nor a threshold")
    return {"num_assistant_tokens": int(chosen.k)}


def set_generation_settings(ir_dir: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``settings`` into the IR's generation config (created if missing)."""
    path = Path(ir_dir) / GENERATION_CONFIG
    config = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object")
    config.update(settings)
    write_json_atomic(path, config)
    return config


def set_num_assistant_tokens(ir_dir: Path, k: int) -> dict[str, Any]:
    """Write ``num_assistant_tokens = k`` into the IR's generation config (created if missing).

    openvino_genai reads it as the default number of draft tokens per step, so the release runs
    with the k measured best on the benchmark device without any caller setting it.
    """
    if k < 1:
        raise ValueError(f"num_assistant_tokens must be >= 1, got {k}")
    return set_generation_settings(ir_dir, {"num_assistant_tokens": int(k)})


# + the tokenizer; an EAGLE-3 head keeps the layers it taps beside its weights
HF_DRAFT_FILES = ("config.json", "model.safetensors", "draft_vocab.json", LAYERS_FILE)


def write_release(
    out: Path,
    draft_ir: Path,
    choice: ModeChoice,
    card: str,
    files: Mapping[str, Path] | None = None,
    draft_dir: Path | None = None,
    prompt_lookup_ngram: int = 3,
) -> Path:
    """A folder that loads as-is: the draft in the Hugging Face layout at its root (from
    ``draft_dir``), ``draft-ir/``, README.md (the card), ``release.json``, figures.

    ``release.json`` names the chosen mode, its settings and the figures it was chosen on (so a
    deployment script can follow the measurement, not a habit). Both generation configs (the
    root one for transformers, ``draft-ir/``'s for openvino_genai) get the chosen mode's settings
    (``sd_generation_settings``, ``hf_generation_settings``); the IR's only when SD won. ``files``
    are extra files (the plots) copied next to the card. Built under a temp name and renamed, so
    a half-written release is never left under ``out``.
    """
    ir_model_file(draft_ir)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        shutil.copytree(draft_ir, tmp / "draft-ir")
        settings = sd_generation_settings(choice)
        if settings:
            set_generation_settings(tmp / "draft-ir", settings)
        hf = {}
        if draft_dir is not None:
            _copy_hf_draft(Path(draft_dir), tmp)
            hf = hf_generation_settings(choice.to_dict()["chosen"], prompt_lookup_ngram)
            set_generation_settings(tmp, hf)
        release = {**choice.to_dict(), "generation_config": settings, "hf_generation_config": hf}
        write_json_atomic(tmp / RELEASE_JSON, release)
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
        (tmp / "README.md").write_text(card)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return replace_dir(tmp, out)


def _copy_hf_draft(draft_dir: Path, out: Path) -> None:
    """The draft's weights, config and tokenizer (not its training logs or card)."""
    for required in ("config.json", "model.safetensors"):
        if not (draft_dir / required).is_file():
            raise FileNotFoundError(f"release: the draft {draft_dir} has no {required}")
    for name in HF_DRAFT_FILES:
        if (draft_dir / name).is_file():
            shutil.copy2(draft_dir / name, out / name)
    copy_tokenizer_files(draft_dir, out)
