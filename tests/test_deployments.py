"""Scheduled deployments against a real Prefect server: `augment serve` (runs in its own process) and `augment deploy`
on a process work pool with a real worker; runs triggered through the API write their own folders and artifacts."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from datetime import datetime, timezone

import pytest

from conftest import BIN, ROOT, small_digits
from test_cli import augment, tiny_sets

pytestmark = pytest.mark.slow  # servers, whole runs or subprocesses: left out of `make test-fast`

# The tests' cron fires 12 hours from now, so no scheduled run can start while a test serves the deployment (one
# started at 03:00 UTC inside the served test: 3 completed runs where the test waits for 2).
CRON_HOUR = (datetime.now(timezone.utc).hour + 12) % 24
CRON = f"0 {CRON_HOUR} * * *"
PREFECT_YAML_CRON = "0 3 * * *"  # what prefect.yaml declares
# Scheduled runs here check orchestration, not quality: no quality probe, one short classifier seed.
FAST = [*tiny_sets(), "--set", "train.track_quality=false", "--set", "evaluate.seeds=1", "--set", "evaluate.steps=10"]


def api(env, path, body=None):
    """GET (or POST a JSON body to) the server's REST API."""
    request = urllib.request.Request(env["PREFECT_API_URL"] + path, method="GET" if body is None else "POST",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def wait_for(probe, seconds, what, process=None, log=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if process is not None and process.poll() is not None:
            break
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}" + (f"; log:\n{log.read_text()[-3000:]}" if log else ""))


def start(args, env, log):
    return subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process, sig=signal.SIGINT, seconds=60) -> int:
    """Ctrl-C to the process group (as a terminal sends it); kill only if it does not end."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def check_runs(env, deployment, parent, expected):
    """The deployment's flow runs completed, are named after dataset and date, wrote one folder each, and
    published the result table as an artifact."""
    filters = {"deployments": {"id": {"any_": [deployment["id"]]}}}
    by_state = lambda state: [r for r in api(env, "/flow_runs/filter", filters) if r["state_type"] == state]
    runs = wait_for(lambda: (lambda done: done if len(done) == expected else None)(by_state("COMPLETED")), 240,
                    f"{expected} completed flow runs")
    # The server's scheduler has also queued the cron's next runs (at CRON_HOUR UTC): the schedule is live.
    upcoming = wait_for(lambda: by_state("SCHEDULED"), 60, "runs scheduled by the cron")
    assert all(r["expected_start_time"][11:16] == f"{CRON_HOUR:02d}:00" for r in upcoming)
    today = datetime.now().strftime("%Y-%m-%d")
    assert all(r["name"].startswith(f"augment-data-{today}") for r in runs), [r["name"] for r in runs]
    assert all(r["parameters"]["run_folder"] and r["parameters"]["out_dir"] == str(parent) for r in runs)
    folders = sorted(parent.iterdir())
    assert len(folders) == expected, folders  # one new folder per run, none written over
    utc_day = datetime.now(timezone.utc).strftime("%Y%m%d")
    for folder in folders:
        assert folder.name.startswith(f"data-{utc_day}-")
        assert (folder / "evaluation" / "metrics.json").is_file() and (folder / "synthetic" / "manifest.csv").is_file()
    artifacts = api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": ["augment-result"]},
                                                             "flow_run_id": {"any_": [r["id"] for r in runs]}}})
    assert len(artifacts) == expected and all("real+synthetic" in a["data"] for a in artifacts)
    for key, kind in (("augment-table", "table"), ("augment-report", "markdown")):  # Prefect stores a link as markdown
        published = api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [r["id"] for r in runs]}}})
        assert len(published) == expected and all(a["type"] == kind for a in published), (key, [a["type"] for a in published])
    assert all(a["data"].startswith("[report.html](file://") and a["data"].endswith("/evaluation/report.html)") for a in published)
    assert deployment.get("concurrency_limit") == 1 or (deployment.get("global_concurrency_limit") or {}).get("limit") == 1


def test_serve_registers_a_cron_deployment_and_executes_its_runs(digits_dir, prefect_server, tmp_path):
    env, parent, log = {**prefect_server, "OMP_NUM_THREADS": "1"}, tmp_path / "runs", tmp_path / "serve.log"
    data = small_digits(digits_dir, tmp_path / "data")
    serve = start([str(BIN / "augment"), "serve", "--dataset", str(data), "--cron", CRON, "--name", "nightly",
                   "--per-class", "10", "--out", str(parent), *FAST], env, log)
    try:
        deployment = wait_for(lambda: api(env, "/deployments/name/augment/nightly"), 90, "the deployment", serve, log)
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
        inspect = subprocess.run([str(BIN / "prefect"), "deployment", "inspect", "augment/nightly"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert CRON in inspect.stdout
        first = subprocess.run([str(BIN / "prefect"), "deployment", "run", "augment/nightly"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        second = subprocess.run([str(BIN / "prefect"), "deployment", "run", "augment/nightly", "--watch"], env=env,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stdout[-2000:] + log.read_text()[-3000:]
        check_runs(env, deployment, parent, expected=2)
    finally:
        code = stop(serve)  # before the server: the other way round serve hangs
    text = log.read_text()
    assert code == 0 and "stopped serving augment/nightly" in text and "Traceback" not in text, text[-3000:]


def assert_typed_form(deployment: dict) -> None:
    """The UI renders a form from the parameter schema: one object per config section, typed fields, a runner menu."""
    schema = deployment["parameter_openapi_schema"]
    assert schema["properties"]["params"]["$ref"] == "#/definitions/Config", schema["properties"]["params"]
    sections = schema["definitions"]["Config"]["properties"]
    assert set(sections) == {"ingest", "train", "generate", "evaluate"}
    train = schema["definitions"]["TrainConfig"]["properties"]
    assert train["steps"] == {"default": 2000, "title": "Steps", "type": "integer"}
    assert schema["definitions"]["EvaluateConfig"]["properties"]["augment_probability"]["type"] == "number"
    assert schema["properties"]["runner"]["enum"] == ["local", "dask"]


def test_deploy_registers_on_a_process_work_pool_and_a_worker_runs_it(digits_dir, prefect_server, tmp_path):
    env, parent, pool = {**prefect_server, "OMP_NUM_THREADS": "1"}, tmp_path / "runs", "augment-test-pool"
    data = small_digits(digits_dir, tmp_path / "data")
    result = augment(["deploy", "--dataset", str(data), "--cron", CRON, "--name", "pooled", "--pool", pool,
                      "--per-class", "10", "--out", str(parent), *FAST], env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    deployment = api(env, "/deployments/name/augment/pooled")
    assert deployment["work_pool_name"] == pool and [s["schedule"]["cron"] for s in deployment["schedules"]] == [CRON]
    assert api(env, f"/work_pools/{pool}")["type"] == "process"
    assert_typed_form(deployment)
    log = tmp_path / "worker.log"
    worker = start([str(BIN / "prefect"), "worker", "start", "--pool", pool], env, log)
    try:
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "augment/pooled", "--watch"], env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + log.read_text()[-3000:]
        check_runs(env, deployment, parent, expected=1)
    finally:
        stop(worker)


def test_prefect_yaml_deploys_with_prefect_deploy(prefect_server):
    env = prefect_server
    pool = subprocess.run([str(BIN / "prefect"), "work-pool", "create", "augment-process", "--type", "process"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert pool.returncode == 0, pool.stdout + pool.stderr
    result = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--name", "nightly-process"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    deployment = api(env, "/deployments/name/augment/nightly-process")
    assert deployment["entrypoint"] == "flows/augment.py:augment_flow"
    assert_typed_form(deployment)
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [PREFECT_YAML_CRON]
    assert deployment["work_pool_name"] == "augment-process" and deployment["parameters"]["run_folder"] is True
    assert deployment.get("concurrency_limit") == 1 or (deployment.get("global_concurrency_limit") or {}).get("limit") == 1
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)


def test_bad_cron_is_a_one_line_error(digits_dir, cli_env, tmp_path):
    result = augment(["serve", "--dataset", str(digits_dir), "--cron", "every night", "--name", "x"], cli_env, tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not a cron expression" in result.stderr.strip().splitlines()[-1]


def test_shutdown_hides_only_asyncio_s_cancelled_callbacks(caplog):
    """Ctrl-C on `serve` (Python 3.11): asyncio logs each cancelled stream callback with a traceback; those go, other
    callback errors stay."""
    import asyncio
    import logging

    from flows.process import drop_cancelled_callbacks as _drop_cancelled_callbacks

    def raise_(error):
        raise error

    async def callbacks():
        loop = asyncio.get_running_loop()
        loop.call_soon(raise_, asyncio.CancelledError())
        loop.call_soon(raise_, ValueError("a real error"))
        await asyncio.sleep(0.05)

    def logged(with_filter: bool) -> list[str]:
        caplog.clear()
        logger = logging.getLogger("asyncio")
        if with_filter:
            logger.addFilter(_drop_cancelled_callbacks)
        try:
            with caplog.at_level(logging.ERROR, logger="asyncio"):
                asyncio.run(callbacks())
        finally:
            logger.removeFilter(_drop_cancelled_callbacks)
        return [type(r.exc_info[1]).__name__ for r in caplog.records if r.exc_info]

    assert logged(with_filter=False) == ["CancelledError", "ValueError"]
    assert logged(with_filter=True) == ["ValueError"]
