"""The Dagster UI for real: `dagster dev` on 127.0.0.1 and headless Chromium (Debian `chromium`).

One server for the module (free port, temporary DAGSTER_HOME with the project's dagster.yaml,
FASTDRAFT_PROFILE=tiny, FASTDRAFT_HOME in a temporary directory), stopped by its process group
at the end. Screenshots go to artifacts/test-screenshots/.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from conftest import REPO

from fastdraft_dag.assets.partitions import TARGET_CHAIN

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FASTDRAFT_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "test-screenshots"
ASSETS = ("target_model", "filtered_corpora", *TARGET_CHAIN)
LOCATION = "fastdraft_dag.definitions"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        out = json.loads(r.read())
    assert "errors" not in out, out
    return out["data"]


WORKSPACE = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
LAUNCH = """mutation Launch($params: ExecutionParams!) { launchPipelineExecution(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
TERMINATE = """mutation Terminate($runId: String!) {
  terminateRun(runId: $runId, terminatePolicy: SAFE_TERMINATE) { __typename } }"""


class UI:
    def __init__(self, url: str, home: Path, root: Path, log: Path):
        self.url, self.home, self.root, self.log = url, home, root, log
        self.instance = dg.DagsterInstance.from_config(str(home))

    def wait_for_run(self, run_id: str, timeout: float) -> dg.DagsterRunStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.instance.get_run_by_id(run_id).status
            if status in (
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
                dg.DagsterRunStatus.CANCELED,
            ):
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s; log: {self.log}")


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    tmp = tmp_path_factory.mktemp("ui")
    home, root = tmp / "dagster_home", tmp / "artifacts"
    home.mkdir()
    root.mkdir()
    # The project's instance settings (pools, run monitoring), without the newsletter dialog.
    (home / "dagster.yaml").write_text(
        (REPO / "dagster.yaml").read_text() + "\nnux:\n  enabled: false\n"
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FASTDRAFT_PROFILE": "tiny",
        "FASTDRAFT_HOME": str(root),
    }
    log = tmp / "dagster-dev.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)]
            + ["-w", str(REPO / "workspace.yaml")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    try:
        deadline = time.monotonic() + 420
        while True:
            assert proc.poll() is None, f"dagster dev exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no code location: {log.read_text()[-3000:]}"
            try:
                (entry,) = gql(url, WORKSPACE)["workspaceOrError"]["locationEntries"]
            except (OSError, ValueError):
                time.sleep(2)
                continue
            if entry["loadStatus"] == "LOADED":
                assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
                break
            time.sleep(2)
        yield UI(url, home, root, log)
    finally:
        proc.send_signal(signal.SIGINT)  # dagster dev's own shutdown
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what is left of its process group
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    # A large viewport: the lineage graph then draws full asset nodes with untruncated names.
    context = browser.new_context(viewport={"width": 2560, "height": 1440})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_asset_graph_shows_every_asset(ui, page):
    page.goto(f"{ui.url}/asset-groups")
    page.get_by_text("Global asset lineage").wait_for()
    for group in ("data", "training", "alignment", "export", "evaluation", "targets"):
        page.get_by_text(group, exact=True).first.wait_for()
    page.keyboard.press("Alt+e")  # the graph's "Expand all groups" (groups start collapsed)
    for name in ASSETS:
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    assert _shot(page, "asset-graph.png").stat().st_size > 10_000


def test_cancelled_run_frees_its_pool_slot(ui):
    """A filtered_corpora run (pool duckdb_writer, limit 1) on the default corpora, cancelled
    while it holds the slot: the run ends CANCELED and the slot is free again."""
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": ["filtered_corpora"]}],
        },
        # The default profile's corpora: long enough to be cancelled mid-way.
        "runConfigData": {
            "resources": {
                "pipeline": {"config": {"profile_name": "default", "artifact_root": str(ui.root)}}
            }
        },
        "mode": "default",
    }
    launched = gql(ui.url, LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    storage = ui.instance.event_log_storage
    deadline = time.monotonic() + 300
    while not any(
        s.run_id == run_id for s in storage.get_concurrency_info("duckdb_writer").claimed_slots
    ):
        assert time.monotonic() < deadline, "the run never claimed the duckdb_writer slot"
        assert ui.instance.get_run_by_id(run_id).status != dg.DagsterRunStatus.SUCCESS
        time.sleep(0.2)
    assert gql(ui.url, TERMINATE, {"runId": run_id})["terminateRun"]["__typename"] == (
        "TerminateRunSuccess"
    )
    assert ui.wait_for_run(run_id, 180) == dg.DagsterRunStatus.CANCELED
    deadline = time.monotonic() + 180  # run monitoring frees what a killed step still held
    while storage.get_concurrency_info("duckdb_writer").claimed_slots:
        assert time.monotonic() < deadline, "the cancelled run still holds its pool slot"
        time.sleep(2)


def test_materialize_from_the_ui_and_read_its_metadata(ui, page):
    """Click Materialize on filtered_corpora (tiny profile), wait for the run, then read the
    metadata the asset reported on its page; it needs the duckdb_writer slot freed above."""
    before = {r.dagster_run.run_id for r in ui.instance.get_run_records()}
    page.goto(f"{ui.url}/assets/filtered_corpora")
    page.get_by_role("button", name="Materialize").first.click()
    deadline = time.monotonic() + 60
    while not (new := {r.dagster_run.run_id for r in ui.instance.get_run_records()} - before):
        assert time.monotonic() < deadline, "clicking Materialize launched no run"
        time.sleep(0.5)
    (run_id,) = new
    run = ui.instance.get_run_by_id(run_id)
    assert run.asset_selection == {dg.AssetKey("filtered_corpora")}
    assert ui.wait_for_run(run_id, 420) == dg.DagsterRunStatus.SUCCESS, ui.log

    manifest = json.loads(
        (ui.root / "filtered_corpora" / "shared")
        .joinpath(
            (ui.root / "filtered_corpora" / "shared" / "LATEST").read_text().strip(),
            "manifest.json",
        )
        .read_text()
    )
    page.reload()
    row = page.locator("tr", has_text="docs_kept").first
    row.wait_for()
    assert str(manifest["metrics"]["docs_kept"]) in row.inner_text()
    version_row = page.locator("tr", has_text="artifact_version").first
    assert manifest["version"] in version_row.inner_text()
    page.get_by_text("per_source").first.wait_for()
    _shot(page, "filtered_corpora-materialized.png")
