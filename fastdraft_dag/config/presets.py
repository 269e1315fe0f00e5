"""Presets and recipe files: every knob of the pipeline, as YAML a user can keep in their repo.

The presets ship in the package as `config/recipes/<name>.yaml`: `tiny` runs the whole graph in
minutes for tests (a random tiny target: plumbing only), `default` is the embedded offline
default (SmolLM2-135M-Instruct, offline corpora, about an hour on 2 cores), `paper` is the
paper's setting: it cannot run here, but it must load and validate; `qwen` is a realistic target
offline (Qwen2.5-Coder-1.5B-Instruct, `make install-qwen`, about two hours on 2 cores).

A recipe file starts from a preset (`base: tiny`; without one, the profile asked for, `default`
unless told) and overrides any setting of it; nested sections merge key by key, lists and
mappings are replaced whole. It is validated completely (`config/loader.py`) before anything
runs, and `recipe_yaml` prints the effective recipe, which loads back to the same Profile.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml

from fastdraft_dag.config.loader import build, override, to_data
from fastdraft_dag.config.schema import (
    AlignConfig,
    BenchConfig,
    CorporaConfig,
    ExportConfig,
    KDConfig,
    PretrainConfig,
    Profile,
    ProfileError,
    ShardsConfig,
    StageConfig,
)

__all__ = [
    "AlignConfig",
    "BenchConfig",
    "CorporaConfig",
    "ExportConfig",
    "KDConfig",
    "PretrainConfig",
    "PROFILES",
    "Profile",
    "ProfileError",
    "ShardsConfig",
    "StageConfig",
    "artifact_recipe",
    "load_preset",
    "load_profile",
    "load_recipe",
    "recipe_data",
    "recipe_yaml",
]

RECIPES = Path(__file__).resolve().parent / "recipes"
PRESET_NAMES = ("tiny", "default", "paper", "qwen")
EMBEDDED = "embedded:smollm2-135m-instruct"


def read_yaml(path: str | Path, what: str) -> Any:
    """A YAML (or JSON) file's data; an unreadable or malformed file is named with the reason."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ProfileError(
            f"{what} {str(path)!r}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8"
        ) from e
    except (OSError, yaml.YAMLError) as e:
        raise ProfileError(f"{what} {str(path)!r}: {e}") from e


def load_preset(name: str) -> Profile:
    """A preset as shipped in `config/recipes/<name>.yaml` (not yet validated as a whole)."""
    path = RECIPES / f"{name}.yaml"
    try:
        return build(Profile, read_yaml(path, "preset"))
    except ProfileError as e:
        raise ProfileError(f"preset {str(path)!r}: {e}") from e


TINY, DEFAULT, PAPER, QWEN = (load_preset(n) for n in PRESET_NAMES)
PROFILES = {p.name: p for p in (TINY, DEFAULT, PAPER, QWEN)}


def _preset(name: str) -> Profile:
    if name not in PROFILES:
        raise ProfileError(f"profile {name!r}: unknown (known: {', '.join(PROFILES)})")
    return PROFILES[name]


def load_recipe(data: Any, base: str = "default") -> Profile:
    """The preset `data["base"]` (else `base`) with every other setting in `data` overridden."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ProfileError(f"a recipe is a mapping of settings, got {type(data).__name__}")
    data = dict(data)
    name = data.pop("base", base)
    if not isinstance(name, str):
        raise ProfileError(f"base: {name!r}, expected a preset name ({', '.join(PROFILES)})")
    try:
        start = _preset(name)
    except ProfileError as e:
        raise ProfileError(f"base: {e}") from e
    return override(start, data)


def load_recipe_file(path: str | Path, base: str = "default") -> Profile:
    """`load_recipe` of a file; every error names the file first."""
    try:
        return load_recipe(read_yaml(path, "recipe"), base).validate()
    except ProfileError as e:
        message = str(e)
        if not message.startswith("recipe "):
            message = f"recipe {str(path)!r}: {message}"
        raise ProfileError(message) from e


def load_profile(
    name: str, target: str | None = None, config_file: str | Path | None = None
) -> Profile:
    """A named preset, or a recipe file on top of one, optionally pointed at another target;
    validated before anything runs."""
    profile = load_recipe_file(config_file, name) if config_file else _preset(name)
    if target:
        profile = replace(profile, target=target)
    return profile.validate()


def recipe_data(profile: Profile) -> dict[str, Any]:
    """The complete recipe as plain data: every setting, so it loads the same on any base.

    Items that are parsed on their own (corpus and prompt sources) leave out settings at their
    defaults, which keeps them readable; `load_recipe` fills those back in.
    """
    return _compact(to_data(profile), profile)


def _compact(data: Any, obj: Any) -> Any:
    if isinstance(obj, list | tuple):
        return [_compact(d, o) for d, o in zip(data, obj, strict=True)]
    if not hasattr(obj, "__dataclass_fields__"):
        return data
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if hasattr(type(obj), "parse") and value == f.default:
            continue
        out[f.name] = _compact(data[f.name], value)
    return out


def recipe_yaml(profile: Profile, source: str = "") -> str:
    """The effective recipe as YAML, with a header saying where it came from."""
    head = f"# Effective recipe{f' ({source})' if source else ''}: every setting, so this file\n"
    head += "# loads as it is (`fastdraft run --config FILE`). Reference: docs/settings.md\n"
    return head + yaml.safe_dump(recipe_data(profile), sort_keys=False, width=4096)


def artifact_recipe(path: str | Path) -> Profile:
    """The recipe that built an artifact (its directory, its manifest, or `<asset>/<partition>`
    whose LATEST names it), from the manifest's `recipe`."""
    path = Path(path)
    if (path / "LATEST").is_file():
        path = path / (path / "LATEST").read_text().strip()
    manifest = path if path.is_file() else path / "manifest.json"
    try:
        recipe = json.loads(manifest.read_text()).get("recipe")
    except (OSError, ValueError) as e:
        raise ProfileError(f"artifact {str(path)!r}: cannot read its manifest: {e}") from e
    if recipe is None:
        raise ProfileError(
            f"artifact {str(path)!r}: its manifest has no recipe (built before manifests kept "
            "one); its `config` holds only the settings its version hashes"
        )
    try:
        return load_recipe(recipe).validate()
    except ProfileError as e:
        raise ProfileError(f"artifact {str(path)!r}: {e}") from e
