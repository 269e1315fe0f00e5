"""Bad input through the real CLI, in subprocesses: one line that names the input, exit 2, no
traceback, and nothing registered or written (issue 22)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fastdraft(
    root: Path, *args: str, profile: str = "tiny", **env: str
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FASTDRAFT_"))}
    where = (
        [] if args[:2] == ("config", "show") else ["--root", "" if root == Path("") else str(root)]
    )
    return subprocess.run(
        [sys.executable, "-m", "fastdraft_dag.cli", *args, "--profile", profile, *where],
        env={**clean, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def refused(result: subprocess.CompletedProcess, *names: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for name in names:
        assert name in result.stderr, (name, result.stderr[-2000:])


def _model_dir(root: Path, config: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(config)
    return root


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (json.dumps({"model_type": "x", "auto_map": {"AutoModelForCausalLM": "m.M"}}), "auto_map"),
        ('{"model_type": "llama", "hidden_si', "unreadable"),
    ],
    ids=["remote-code", "truncated"],
)
def test_targets_add_refuses_a_directory_it_could_not_load(tmp_path: Path, config, says) -> None:
    model = _model_dir(tmp_path / "model", config)
    result = fastdraft(tmp_path / "root", "targets", "add", str(model))
    refused(result, says, str(model / "config.json"))
    listed = fastdraft(tmp_path / "root", "targets", "list")
    assert listed.returncode == 0 and str(model) not in listed.stdout


def test_targets_add_refuses_a_blank_id(tmp_path: Path) -> None:
    refused(fastdraft(tmp_path / "root", "targets", "add", "  "), "empty id")


ENV_CASES = [
    ("FASTDRAFT_ACCEPTANCE_TOLERANCE", "abc"),
    ("FASTDRAFT_HPU_DEVICES", "x"),
    ("FASTDRAFT_CHECKPOINT_EVERY", "-1"),
    ("FASTDRAFT_RETRAIN_CRON", "bogus"),
    ("FASTDRAFT_CRON_TZ", "Mars/Olympus"),
    ("FASTDRAFT_SOURCES", "/no/such/sources.yaml"),
    ("FASTDRAFT_VERIFY", "bogus"),
]


@pytest.mark.parametrize(("name", "value"), ENV_CASES, ids=[n for n, _ in ENV_CASES])
def test_a_bad_environment_variable_is_named_before_anything_runs(tmp_path, name, value):
    result = fastdraft(tmp_path / "root", "run", **{name: value})
    refused(result, value)
    assert name in result.stderr or "sources file" in result.stderr
    assert not (tmp_path / "root" / "filtered_corpora").exists()


@pytest.mark.parametrize("encoding", ["utf-16", "binary"])
def test_a_recipe_that_is_not_utf8_text_is_named(tmp_path: Path, encoding: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    if encoding == "binary":
        recipe.write_bytes(b"\xff\xfe\x00\x01\x02binary")
    else:
        recipe.write_text("base: tiny\n", encoding=encoding)
    refused(
        fastdraft(tmp_path / "root", "config", "show", "--config", str(recipe)),
        str(recipe),
        "UTF-8",
    )


def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.write_text("not a directory")
    for args in (("run",), ("targets", "list"), ("bench", "--draft", str(tmp_path))):
        refused(fastdraft(root, *args), str(root), "is a file")


def test_unknown_selection_partition_and_target_are_named_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    refused(fastdraft(root, "run", "--select", "aligned_draf"), "aligned_draf", "eagle3_head")
    refused(fastdraft(root, "run", "--partition", "no-such-target"), "no-such-target")
    refused(fastdraft(root, "run", "--target", "/no/such/dir"), "/no/such/dir")
    assert not (root / "filtered_corpora").exists()


def test_a_hub_target_that_cannot_be_reached_is_named(tmp_path: Path) -> None:
    """The paper profile's target is a hub id: offline, one line naming it, nothing registered."""
    result = fastdraft(tmp_path / "root", "run", profile="paper", HF_HUB_OFFLINE="1")
    refused(result, "microsoft/Phi-3-mini-4k-instruct", "cannot be resolved on the hub")
    assert not (tmp_path / "root" / "targets.json").exists()


def test_a_corrupt_registry_and_duckdb_file_are_named(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "targets.json").write_text('{"targets": {"x": ')
    refused(fastdraft(root, "targets", "list"), str(root / "targets.json"))
    (root / "targets.json").unlink()
    (root / "fastdraft.duckdb").write_text("not a database")
    refused(fastdraft(root, "report", "--history"), str(root / "fastdraft.duckdb"))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = fastdraft(tmp_path / "root", "run", "--debug", FASTDRAFT_HPU_DEVICES="x")
    assert result.returncode != 0 and "Traceback" in result.stderr


RECIPE_CASES = [
    ("bench: {ks: [0]}", "bench.ks"),
    ("kd: {max_new_tokens: 0}", "kd.max_new_tokens"),
    ("threads: -3", "threads"),
    ("align: {val_fraction: 1.5}", "align.val_fraction"),
    ("export: {target_format: int2}", "int2"),
    ("bench: {prompt_files: [/no/such/prompts.jsonl]}", "/no/such/prompts.jsonl"),
]


@pytest.mark.parametrize(("setting", "says"), RECIPE_CASES, ids=[s for _, s in RECIPE_CASES])
def test_config_show_validates_the_whole_recipe(tmp_path: Path, setting: str, says: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"base: tiny\n{setting}\n")
    refused(fastdraft(tmp_path / "root", "config", "show", "--config", str(recipe)), says)


def test_report_history_reads_without_writing_and_gives_up_on_a_held_file(tmp_path: Path) -> None:
    """`report --history` opens DuckDB read-only: it works on a file it may not write, and
    when a writer holds the file it says so after a short wait instead of hanging."""
    import duckdb

    root = tmp_path / "root"
    root.mkdir()
    db = root / "fastdraft.duckdb"
    duckdb.connect(str(db)).close()  # a file with no benchmark tables yet
    before = db.read_bytes()
    ok = fastdraft(root, "report", "--history")
    assert ok.returncode == 0 and "0 draft versions" in ok.stdout, ok.stderr[-2000:]
    assert db.read_bytes() == before  # nothing created or migrated by a report
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); "
         "print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(fastdraft(root, "report", "--history"), str(db), "held by another process")
    finally:
        holder.kill()
        holder.wait()


def test_verify_refuses_a_root_that_is_missing_or_a_file(tmp_path: Path) -> None:
    refused(fastdraft(tmp_path / "missing", "artifacts", "verify"), "does not exist")
    (tmp_path / "file").write_text("x")
    refused(fastdraft(tmp_path / "file", "artifacts", "verify"), "is a file")


def test_bench_checks_its_options_before_any_work(tmp_path: Path) -> None:
    """--out naming a file, --ks that are not numbers and a --prompts directory are refused
    before the benchmark runs (the first used to crash after the whole benchmark)."""
    root = tmp_path / "root"
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    draft = ("--draft", str(tmp_path))
    refused(fastdraft(root, "bench", *draft, "--out", str(out)), str(out), "is a file")
    assert out.read_text() == "keep me"
    refused(fastdraft(root, "bench", *draft, "--ks", "abc"), "--ks", "abc")
    (tmp_path / "prompts").mkdir()
    prompts = ("--prompts", str(tmp_path / "prompts"))
    refused(fastdraft(root, "bench", *draft, *prompts), "is a directory")
    assert not (root / "fastdraft.duckdb").exists()


def test_an_empty_root_is_refused_not_the_working_directory(tmp_path: Path) -> None:
    for args in (("report",), ("run",), ("artifacts", "verify")):
        refused(fastdraft(Path(""), *args), "FASTDRAFT_HOME is empty")


def test_verify_fails_on_what_is_used_not_on_a_superseded_broken_version(tmp_path: Path) -> None:
    from fastdraft_dag.storage.artifacts import ArtifactStore

    root = tmp_path / "root"
    store = ArtifactStore(root)

    def build(text: str):
        def write(out: Path) -> dict:
            (out / "data.txt").write_text(text)
            return {}

        return store.build("a", "p", code_version="1", config={"t": text}, inputs={}, build=write)

    old, new = build("old"), build("new")  # LATEST -> new
    (old.path / "data.txt").write_text("bad")
    result = fastdraft(root, "artifacts", "verify")
    assert result.returncode == 0, result.stdout
    assert "superseded" in result.stdout and str(old.path) in result.stdout
    (new.path / "data.txt").write_text("bad")
    result = fastdraft(root, "artifacts", "verify")
    assert result.returncode == 1 and f"BROKEN  {new.path}" in result.stdout
