"""Every FASTDRAFT_* variable is declared once (core/settings.py) and read only through it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastdraft_dag.core.errors import ConfigError
from fastdraft_dag.core.settings import (
    Settings,
    declarations,
    read_setting,
    readme_block,
    readme_table,
    render_readme,
)

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "fastdraft_dag"
DECLARED = {f.metadata["env"] for f in declarations()}


def test_the_readme_table_is_the_declarations():
    text = (REPO / "README.md").read_text()
    start, end = readme_block(text)
    assert text[start:end] == readme_table(), (
        "README's environment-variable table differs from fastdraft_dag/core/settings.py: "
        "run `python -m fastdraft_dag.core.settings README.md`"
    )


def test_the_table_has_one_row_per_public_variable_with_its_default():
    rows = [r for r in readme_table().splitlines() if r.startswith("| `")]
    public = [f for f in declarations() if not f.metadata["internal"]]
    assert [r.split("`")[1] for r in rows] == [f.metadata["env"] for f in public]
    assert "| `FASTDRAFT_HPU_DEVICES` |" in readme_table() and "| `1` |" in readme_table()
    assert "FASTDRAFT_PARENT_PID" not in readme_table()  # set by the code, not by a user


def test_render_replaces_only_the_block():
    text = render_readme((REPO / "README.md").read_text())
    assert text == (REPO / "README.md").read_text()
    with pytest.raises(ValueError, match="markers"):
        readme_block("# no table here\n")


def test_every_variable_named_in_the_package_is_declared():
    named = set()
    for path in PACKAGE.rglob("*.py"):
        named |= set(re.findall(r"FASTDRAFT_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    named -= {"FASTDRAFT_HPU"}  # "FASTDRAFT_HPU_*" in prose
    assert named <= DECLARED, sorted(named - DECLARED)


def test_no_module_reads_a_variable_around_the_settings():
    pattern = re.compile(
        r"(environ\.get|getenv)\(\s*['\"]FASTDRAFT_|environ\[['\"]FASTDRAFT_\w+['\"]\]\s*[^=\s]"
    )
    readers = [
        f"{p.relative_to(REPO)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "settings.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert readers == []


def test_unset_variables_read_as_their_declared_defaults():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.home, settings.hpu_devices, settings.acceptance_tolerance) == (
        "artifacts",
        1,
        0.02,
    )


def test_values_are_typed_and_blank_rules_hold():
    env = {
        "FASTDRAFT_HPU_DEVICES": " 4 ",
        "FASTDRAFT_ACCEPTANCE_TOLERANCE": "0.05",
        "FASTDRAFT_CHECKPOINT_EVERY": "",  # a blank number is unset
        "FASTDRAFT_VERIFY": " ",  # blank: the default level
        "FASTDRAFT_HOME": "",  # kept, so the CLI refuses it by name
    }
    s = Settings.from_env(env)
    assert (s.hpu_devices, s.acceptance_tolerance, s.checkpoint_every) == (4, 0.05, 50)
    assert (s.verify, s.home) == ("consumed", "")


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("FASTDRAFT_HPU_DEVICES", "0"),
        ("FASTDRAFT_HPU_DEVICES", "two"),
        ("FASTDRAFT_CHECKPOINT_EVERY", "-1"),
        ("FASTDRAFT_ACCEPTANCE_TOLERANCE", "nan"),
        ("FASTDRAFT_PARENT_PID", "x"),
    ],
)
def test_a_malformed_number_is_refused_by_name(name, raw):
    with pytest.raises(ConfigError, match=f"{name}={raw!r}"):
        Settings.from_env({name: raw})
    with pytest.raises(ConfigError, match=name):
        read_setting(name, {name: raw})


def test_an_undeclared_name_is_a_clear_error():
    with pytest.raises(KeyError, match="FASTDRAFT_NOPE: not a declared setting"):
        read_setting("FASTDRAFT_NOPE", {})
