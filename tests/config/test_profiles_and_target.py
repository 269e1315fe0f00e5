"""Profiles validate; targets resolve or fail naming what was asked for; tokenizers are compared."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from fastdraft_dag.config import presets as profiles
from fastdraft_dag.config.presets import ProfileError, load_profile
from fastdraft_dag.core.errors import InputError
from fastdraft_dag.core.tokenizers import (
    TokenizerComparison,
    compare_tokenizers,
    require_same_tokens,
)
from fastdraft_dag.targets.resolve import (
    EMBEDDED_NAME,
    TargetError,
    resolve_embedded,
    resolve_target,
    target_key,
)


@pytest.mark.parametrize("name", ["tiny", "default", "paper"])
def test_every_profile_loads_and_validates(name):
    assert load_profile(name).name == name


def test_unknown_profile_is_named():
    with pytest.raises(ProfileError, match="'nope'"):
        load_profile("nope")


def test_profile_rejects_unknown_mix_domain(monkeypatch):
    stage = dataclasses.replace(profiles.TINY.pretrain.stages[0], mix={"poetry": 1.0})
    bad = dataclasses.replace(
        profiles.TINY,
        name="bad",
        pretrain=dataclasses.replace(profiles.TINY.pretrain, stages=(stage,)),
    )
    monkeypatch.setitem(profiles.PROFILES, "bad", bad)
    with pytest.raises(ProfileError, match="poetry"):
        load_profile("bad")


def test_target_keys_are_partition_safe(tmp_path):
    assert target_key(EMBEDDED_NAME) == "smollm2-135m-instruct"
    assert target_key("microsoft/Phi-3-mini-4k-instruct@main") == "microsoft-phi-3-mini-4k-instruct"
    (tmp_path / "My Model").mkdir()
    assert target_key(str(tmp_path / "My Model")) == "my-model"


def test_unresolvable_targets_fail_naming_them(tmp_path):
    with pytest.raises(TargetError, match="embedded:nope"):
        resolve_target("embedded:nope", tmp_path)
    with pytest.raises(TargetError, match="not an embedded name"):
        resolve_target("no such thing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetError, match="no config.json"):
        resolve_target(str(tmp_path / "empty"), tmp_path)


def test_embedded_target_has_the_real_smollm2_tokenizer(target_dir, tokenizer):
    assert len(tokenizer) == 49152
    assert (tokenizer.eos_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_start|>")
    # No BOS is prepended and spaces are byte-level, not separate tokens.
    ids = tokenizer("Hello world", add_special_tokens=True)["input_ids"]
    assert 0 not in ids and 1 not in ids and len(ids) == 2
    assert tokenizer.decode(tokenizer("def f(x):\n    return 12")["input_ids"]) == (
        "def f(x):\n    return 12"
    )


def test_embedded_resolution_is_cached_and_revision_is_the_gguf_hash(target_dir):
    from conftest import CACHE

    again = resolve_embedded(CACHE / "targets")
    assert again.path == target_dir
    assert again.revision == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def test_local_directory_revision_changes_with_its_files(tiny_target_dir, tmp_path):
    copy = tmp_path / "local-target"
    shutil.copytree(tiny_target_dir, copy)
    before = resolve_target(str(copy), tmp_path).revision
    cfg = json.loads((copy / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(cfg))
    assert resolve_target(str(copy), tmp_path).revision != before


def test_tokenizer_mismatch_is_described(target_dir, tmp_path):
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (Path(target_dir) / name).exists():
            shutil.copy2(Path(target_dir) / name, other / name)
    assert compare_tokenizers(other, target_dir) == TokenizerComparison()
    # A chat template only renders prompts (with the target's tokenizer): a warning, not a refusal.
    (other / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    found = compare_tokenizers(other, target_dir)
    assert found.blocking == [] and len(found.warnings) == 1
    assert found.warnings[0].startswith("chat template")
    (warning,) = require_same_tokens(other, target_dir, "reference draft")
    assert warning.startswith(f"reference draft at {other}: chat template")
    # one clause changed deep inside the real template: the message shows where, not two
    # identical 120-character openings
    real = (Path(target_dir) / "chat_template.jinja").read_text()
    cut = len(real) // 2
    (other / "chat_template.jinja").write_text(real[:cut] + "EXTRA" + real[cut:])
    (diff,) = compare_tokenizers(other, target_dir).warnings
    assert "EXTRA" in diff and f"at character {cut} of {len(real) + 5} vs {len(real)}:" in diff
    assert "\\\\" not in diff  # the template's own escapes, not escaped twice more
    (other / "chat_template.jinja").write_text(real)
    # unk and pad are roles decoding never reads (a hub Qwen names no unk token): a warning;
    # eos stops generation: another eos refuses the draft.
    config_path = other / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "unk_token": None, "pad_token": "<|im_start|>"}))
    (warning,) = compare_tokenizers(other, target_dir).warnings
    assert warning.startswith("other special-token roles") and "unk_token" in warning
    config_path.write_text(json.dumps({**config, "eos_token": "<|im_start|>"}))
    (refusal,) = compare_tokenizers(other, target_dir).blocking
    assert refusal.startswith("start and stop tokens") and "im_start" in refusal
    config_path.write_text(json.dumps(config))
    # Token ids are what decoding reads: a moved id refuses the draft.
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = list(vocab)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other / "tokenizer.json").write_text(json.dumps(tok))
    found = compare_tokenizers(other, target_dir)
    assert found.blocking == [
        "vocabulary: 49152 vs 49152 tokens, 0 extra, 0 missing, 2 with other ids"
    ]
    with pytest.raises(
        InputError, match=f"reference draft at {other} does not share.*2 with other"
    ):
        require_same_tokens(other, target_dir, "reference draft")
    (other / "tokenizer.json").write_text((Path(target_dir) / "tokenizer.json").read_text()[:500])
    with pytest.raises(InputError, match=f"{other}.*cannot be loaded.*tokenizer.json"):
        compare_tokenizers(other, target_dir)


def test_a_target_that_needs_remote_code_is_refused_naming_its_config(tmp_path):
    """No loader passes trust_remote_code, so such a target fails at once, by name."""
    model = tmp_path / "custom-model"
    model.mkdir()
    config = {"model_type": "custom", "auto_map": {"AutoConfig": "configuration_custom.Cfg"}}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(TargetError, match=f"{model / 'config.json'}.*needs remote code"):
        resolve_target(str(model), tmp_path / "cache")
