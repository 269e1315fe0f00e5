"""The release never ships a mode slower than plain: mode choice, intervals, release and card.

Pure functions on synthetic rows, plus the benchmark runner end to end with a fake device (no
models, no Dagster) and the export runner with a fake exporter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard, metadata_load

from fastdraft_dag.evaluation import benchmark, modes
from fastdraft_dag.evaluation.bootstrap import pooled_speedup, speedup_interval
from fastdraft_dag.evaluation.config import BenchConfig
from fastdraft_dag.evaluation.live import LiveJob, LiveResult
from fastdraft_dag.evaluation.offline import OfflineJob, OfflineRow, rows_by_task
from fastdraft_dag.evaluation.results import RELEASE_JSON, sd_generation_settings, write_release
from fastdraft_dag.reporting.model_card import release_card, write_model_card
from fastdraft_dag.reporting.tables import render_benchmark
from fastdraft_dag.targets.resolve import card_metadata

PLAIN_TOK_S = 100.0


def _row(mode: str, tok_s: float, k: int | None = None, threshold: float | None = None) -> dict:
    return {
        "mode": mode,
        "k": k,
        "confidence_threshold": threshold,
        "task": "all",
        "tok_s": tok_s,
        "speedup": tok_s / PLAIN_TOK_S,
        "speedup_ci_low": tok_s / PLAIN_TOK_S - 0.05,
        "speedup_ci_high": tok_s / PLAIN_TOK_S + 0.05,
    }


def _rows(sd: dict[int, float], lookup: dict[int, float], thresholds: dict[float, float]) -> list:
    rows = [_row("plain", PLAIN_TOK_S)]
    rows += [_row("sd", v, k=k) for k, v in sd.items()]
    rows += [_row("sd", v, threshold=t) for t, v in thresholds.items()]
    rows += [_row("prompt_lookup", v, k=k) for k, v in lookup.items()]
    rows.append({**_row("sd", 999.0, k=2), "task": "code"})  # per-family rows never decide
    rows.append(_row("reference_draft", 999.0, k=2))  # a yardstick, never shipped
    return rows


SD_SLOW = _rows({2: 80.0, 3: 84.0}, {2: 94.0, 3: 97.0}, {0.3: 90.0})
LOOKUP_WINS = _rows({2: 80.0, 3: 110.0}, {2: 120.0, 4: 137.5}, {0.3: 105.0})
SD_K_WINS = _rows({2: 150.0, 3: 160.0}, {2: 120.0}, {0.3: 155.0})
SD_THRESHOLD_WINS = _rows({2: 150.0, 3: 160.0}, {2: 120.0}, {0.3: 170.0})


def test_plain_fastest_ships_plain() -> None:
    choice = modes.choose_mode(SD_SLOW)
    assert choice.chosen.mode == "plain" and choice.chosen.label == "plain"
    assert (
        choice.best_sd.label == "sd threshold=0.3"
        and choice.best_lookup.label == "prompt_lookup k=3"
    )
    assert not choice.sd_pays
    assert "slows decoding down" in modes.verdict(choice)


def test_prompt_lookup_fastest_ships_lookup_at_its_own_k_with_the_gap() -> None:
    choice = modes.choose_mode(LOOKUP_WINS)
    assert (choice.chosen.mode, choice.chosen.k) == ("prompt_lookup", 4)
    assert choice.best_sd.label == "sd k=3"
    assert choice.sd_vs_lookup == pytest.approx(110.0 / 137.5)
    assert not choice.sd_pays
    assert "loses to prompt lookup" in modes.verdict(choice)
    assert choice.speedups() == {"plain": 1.0, "sd k=3": 1.1, "prompt_lookup k=4": 1.375}


def test_sd_fastest_ships_sd_with_its_k_or_threshold() -> None:
    by_k = modes.choose_mode(SD_K_WINS)
    assert (by_k.chosen.mode, by_k.chosen.k, by_k.chosen.confidence_threshold) == ("sd", 3, None)
    assert by_k.sd_pays and "pays for itself" in modes.verdict(by_k)
    by_threshold = modes.choose_mode(SD_THRESHOLD_WINS)
    chosen = by_threshold.chosen
    assert (chosen.mode, chosen.k, chosen.confidence_threshold) == ("sd", None, 0.3)
    assert by_threshold.sd_pays


def test_ties_go_to_the_simpler_mode_and_plain_is_required() -> None:
    tie = [_row("plain", 100.0), _row("sd", 100.0, k=2), _row("prompt_lookup", 100.0, k=2)]
    assert modes.choose_mode(tie).chosen.mode == "plain"
    assert modes.choose_mode([_row("plain", 1.0), *tie[1:]]).chosen.mode == "sd"
    with pytest.raises(ValueError, match="plain"):
        modes.choose_mode(tie[1:])


def test_choice_round_trips_through_json() -> None:
    choice = modes.choose_mode(LOOKUP_WINS)
    data = json.loads(json.dumps(choice.to_dict()))
    assert modes.ModeChoice.from_dict(data) == choice
    assert data["chosen"]["label"] == "prompt_lookup k=4"


def _prompts(n: int, seed: int = 1) -> tuple[list, list, list, list]:
    rng = np.random.default_rng(seed)
    tokens = [64.0] * n
    plain_seconds = list(rng.uniform(0.8, 1.2, n))
    seconds = [s / rng.uniform(1.0, 1.6) for s in plain_seconds]  # 1.0x-1.6x per prompt
    return tokens, seconds, tokens, plain_seconds


def test_bootstrap_interval_contains_the_point_narrows_and_is_seeded() -> None:
    few, many = _prompts(8), _prompts(200)
    for sample in (few, many):
        low, high = speedup_interval(*sample)
        assert low < pooled_speedup(*sample) < high
    width = lambda s: np.subtract(*speedup_interval(*s)[::-1])  # noqa: E731
    assert width(many) < width(few) / 2
    assert speedup_interval(*few, seed=3) == speedup_interval(*few, seed=3)
    assert speedup_interval(*few, seed=3) != speedup_interval(*few, seed=4)
    one = speedup_interval([10.0], [1.0], [10.0], [2.0])
    assert one == pytest.approx((2.0, 2.0)), "one prompt: nothing to resample"
    with pytest.raises(ValueError, match="equal"):
        speedup_interval([1.0], [1.0, 2.0], [1.0], [1.0])


def _ir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "openvino_model.xml").write_text("<net/>")
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    return path


def _card(choice: modes.ModeChoice) -> str:
    return release_card(
        target="org/model",
        draft_precision="int8",
        choice=choice.to_dict(),
        device="CPU",
        summary_md="| table |",
        images={},
        lineage={"aligned_draft": "abc"},
    )


@pytest.mark.parametrize(
    ("rows", "generation"),
    [
        (SD_K_WINS, {"eos_token_id": 2, "num_assistant_tokens": 3}),
        (
            SD_THRESHOLD_WINS,
            {"eos_token_id": 2, "num_assistant_tokens": 0, "assistant_confidence_threshold": 0.3},
        ),
        (LOOKUP_WINS, {"eos_token_id": 2}),
        (SD_SLOW, {"eos_token_id": 2}),
    ],
)
def test_release_sets_sd_settings_only_when_sd_wins(tmp_path: Path, rows, generation) -> None:
    choice = modes.choose_mode(rows)
    release = write_release(tmp_path / "release", _ir(tmp_path / "ir"), choice, _card(choice))
    written = json.loads((release / "draft-ir" / "generation_config.json").read_text())
    assert written == generation
    meta = json.loads((release / RELEASE_JSON).read_text())
    assert meta["chosen"]["label"] == choice.chosen.label
    assert meta["generation_config"] == sd_generation_settings(choice)
    assert json.loads((tmp_path / "ir" / "generation_config.json").read_text()) == {
        "eos_token_id": 2
    }, "the source IR must stay untouched"


def test_card_names_the_chosen_mode_plainly() -> None:
    sd = _card(modes.choose_mode(SD_K_WINS))
    assert "Recommended: speculative decoding with this draft, `sd k=3`" in sd
    assert "config.num_assistant_tokens = 3" in sd and "1.600x plain" in sd
    assert "95% interval [1.55, 1.65]" in sd
    threshold = _card(modes.choose_mode(SD_THRESHOLD_WINS))
    assert "config.assistant_confidence_threshold = 0.3" in threshold
    lookup = _card(modes.choose_mode(LOOKUP_WINS))
    assert "Recommended: prompt lookup decoding (`prompt_lookup k=4`), not this draft." in lookup
    assert "prompt_lookup=True" in lookup and "draft_model" not in lookup
    assert "0.800 of prompt lookup's tokens/s" in lookup and "1.25x faster" in lookup
    assert "no speculative-decoding settings" in lookup
    plain = _card(modes.choose_mode(SD_SLOW))
    assert "No mode beat plain decoding" in plain and "run the target alone" in plain
    assert "draft_model" not in plain and "num_assistant_tokens" not in plain
    for card in (lookup, plain):
        assert "Recommended: speculative decoding" not in card


def test_card_front_matter_is_what_the_hub_reads(tmp_path: Path) -> None:
    """The release card's metadata round-trips through huggingface_hub (what the hub shows:
    base model, license, tags), its body follows the front matter, and a target directory's
    card gives the draft its license; a card whose front matter does not parse gives none."""
    card = release_card(
        target="org/model", draft_precision="int8",
        choice=modes.choose_mode(SD_K_WINS).to_dict(), device="CPU", summary_md="| table |",
        images={}, lineage={"aligned_draft": "abc"}, base_model="org/model",
        license_id="apache-2.0",
    )  # fmt: skip
    (tmp_path / "README.md").write_text(card)
    data = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert data == {
        "base_model": "org/model", "library_name": "transformers", "license": "apache-2.0",
        "pipeline_tag": "text-generation",
        "tags": ["speculative-decoding", "fastdraft", "openvino", "assistant-model"],
    }  # fmt: skip
    assert card.startswith("---\n") and "\n---\n# FastDraft draft for `org/model`" in card
    assert card_metadata(str(tmp_path), tmp_path) == (None, "apache-2.0")
    (tmp_path / "README.md").write_text("---\nlicense: [mit\n---\n# broken")
    assert card_metadata(str(tmp_path), tmp_path) == (None, None)
    (tmp_path / "README.md").write_text("# no front matter; license: mit\n")
    assert card_metadata(str(tmp_path), tmp_path) == (None, None)
    write_model_card(tmp_path, "Draft", "t", {"val_loss": 1.5}, {"x": "y"})
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: transformers\ntags:\n- speculative-decoding\n")
    assert metadata_load(tmp_path / "README.md") == {
        "library_name": "transformers", "tags": ["speculative-decoding", "fastdraft"],
    }  # fmt: skip


def _offline() -> list[dict]:
    scored = {"code": [{"matches": [True, False, True], "overlaps": [0.9, 0.2, 0.8]}]}
    return rows_by_task(scored, [1, 2, 3], 0.1, "torch-fp32")


class FakeDevice:
    """Stands in for the Core Ultra resource: canned rows, records what it was asked."""

    device = "CPU"

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        self.offline_job: OfflineJob | None = None
        self.live_job: LiveJob | None = None

    def evaluate_offline(self, job: OfflineJob) -> list[OfflineRow]:
        self.offline_job = job
        return _offline()

    def benchmark_live(self, job: LiveJob) -> LiveResult:
        self.live_job = job
        return {
            "rows": self.rows,
            "best_k": 3,
            "divergences": [],
            "samples": [],
            "plain_passes": [],
            "warnings": [],
        }


def test_run_benchmark_writes_results_and_release_without_dagster(tmp_path: Path) -> None:
    irs = tmp_path / "irs"
    _ir(irs / "draft-int8")
    (tmp_path / "draft").mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "train_log.jsonl"):
        (tmp_path / "draft" / name).write_text("{}")
    bench = BenchConfig(sd_ks=(2, 3), sd_confidence_thresholds=(0.3,), sd_prompts_per_family=1)
    job = benchmark.BenchmarkJob(
        target_name="org/model",
        target_dir=tmp_path / "target",
        draft_dir=tmp_path / "draft",
        irs_dir=irs,
        bench=bench,
        draft_formats=("int8",),
        target_format="int4",
        threads=2,
        lineage={"aligned_draft": "abc"},
    )
    device = FakeDevice(LOOKUP_WINS)
    out = tmp_path / "out"
    out.mkdir()
    result = benchmark.run_benchmark(job, benchmark.prompt_sets(bench), device, out)
    live = device.live_job
    assert live.ks == [2, 3] and live.confidence_thresholds == [0.3]
    assert live.target_ir == irs / "target-int4" and live.draft_ir == irs / "draft-int8"
    assert device.offline_job.draft_irs == {"int8": irs / "draft-int8"}
    assert result.choice.chosen.label == "prompt_lookup k=4"
    assert benchmark.BenchmarkResult.load(out) == result
    card = (out / "release" / "README.md").read_text()
    assert "Recommended: prompt lookup decoding" in card and "abc" in card
    summary = (out / "results.md").read_text()
    assert "| speedup_95ci |" in summary and "Release mode on CPU: **prompt_lookup k=4**" in summary
    assert result.metrics()["release_mode"] == "prompt_lookup k=4"
    shipped = {p.name for p in (out / "release").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= shipped
    assert "train_log.jsonl" not in shipped  # the draft's weights and tokenizer, not its logs
    hf = json.loads((out / "release" / "generation_config.json").read_text())
    assert hf == {"prompt_lookup_num_tokens": 4, "max_matching_ngram_size": 3}


def test_render_benchmark_shows_intervals_and_the_release_mode() -> None:
    choice = modes.choose_mode(SD_K_WINS)
    tables = {"offline": _offline(), "wallclock": SD_K_WINS, "best_k": 3, "device": "CPU"}
    summary = render_benchmark({**tables, "choice": choice.to_dict()})
    assert "[1.55, 1.65]" in summary and "| confidence_threshold |" in summary
    assert "Release mode on CPU: **sd k=3** (1.600x plain, 95% interval [1.55, 1.65])" in summary


def test_draft_pays_check_warns_with_the_figures() -> None:
    import dagster as dg

    from fastdraft_dag.assets.evaluation import draft_pays_check

    bad = draft_pays_check(modes.choose_mode(LOOKUP_WINS))
    assert bad.passed is False and bad.severity == dg.AssetCheckSeverity.WARN
    assert bad.metadata["chosen_mode"].value == "prompt_lookup k=4"
    assert bad.metadata["speedups"].value["sd k=3"] == 1.1
    assert "loses to prompt lookup" in bad.description
    assert draft_pays_check(modes.choose_mode(SD_K_WINS)).passed is True
