"""The command line explains itself: every option of every command has help; --version."""

from __future__ import annotations

import argparse

import pytest

from fastdraft_dag.cli import build_parser, main, package_version


def parsers(parser: argparse.ArgumentParser, name: str = "fastdraft"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_option_of_every_command_has_help():
    found = list(parsers(build_parser()))
    assert {"fastdraft run", "fastdraft config show", "fastdraft targets add"} <= dict(found).keys()
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in found
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip()
    ]
    assert not missing, f"options without help: {missing}"


def test_run_help_says_what_profile_root_and_config_are(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--profile PROFILE preset the recipe starts from: tiny | default | paper | qwen" in out
    assert "--root ROOT artifact root" in out
    assert "--config RECIPE.yaml recipe file overriding settings of the preset" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and package_version() != "0+unknown"  # installed here
    assert capsys.readouterr().out.strip() == f"fastdraft {package_version()}"
