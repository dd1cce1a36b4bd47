"""The deployments of prefect.yaml as the README runs them: a real `prefect server start` on
127.0.0.1 (the session's: conftest's ``local_prefect_server``), a process work pool, `prefect deploy
--all`, a worker, `prefect deployment run ... --watch`, and `actalign prompt publish` starting the
event-triggered deployment.

The deployed file is the repository's prefect.yaml with only the `config` parameters replaced
(the demo videos, tiny-random, a temporary workdir, a loopback LLM server)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from llm_server import LLMServer, good
from prefect_server import BIN, background, tail
from typer.testing import CliRunner

import actalign
from actalign.cli.main import app
from actalign.cli.prompt import PUBLISHED_EVENT
from actalign.config import RunConfig
from actalign.demo_data import without_texts
from actalign.llm.prompts import load_template

REPO = Path(__file__).resolve().parents[1]
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
# Deadlines for a loaded 2-core machine (two flow-run processes, each importing torch and Prefect); a quiet
# machine finishes in a fraction of them, and nothing waits longer than the work it waits for.
COMMAND_TIMEOUT_S = 600
RUN_TIMEOUT_S = 600
REQUEST_TIMEOUT_S = 60  # one API request
REQUEST_DEADLINE_S = 180  # retries of one request on transport errors and 5xx answers


def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in prefect_yaml()["deployments"]}


def test_prefect_yaml_declares_the_pipeline_and_sweep_deployments_with_valid_parameters():
    found = deployments()
    assert set(found) == {"on-demand", "nightly", "on-prompt-change", "sweep-on-demand"}
    for name, deployment in found.items():
        assert deployment["enforce_parameter_schema"] is True
        if name == "sweep-on-demand":
            assert deployment["entrypoint"] == "flows/sweep.py:sweep" and set(deployment["parameters"]) == {"grid_file"}
            continue
        assert deployment["entrypoint"] == "flows/deployments.py:scheduled_pipeline"
        RunConfig(**deployment["parameters"]["config"])  # the example parameters are a valid CLI configuration
    assert found["nightly"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert found["on-prompt-change"]["triggers"][0]["expect"] == [PUBLISHED_EVENT]
    assert RunConfig(**found["on-prompt-change"]["parameters"]["config"]).provider == "openai"
    assert not {"api_key", "proxy", "cookies"} & keys_in(prefect_yaml())  # secrets come from the environment


def keys_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_in(v) for v in value))
    return set()


def test_publish_rejects_a_bad_template_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\n")
    result = CliRunner().invoke(app, ["prompt", "publish", str(bad)])
    assert result.exit_code == 2
    assert "lacks" in result.output and "min_steps" in result.output


def run(command: list[str], env: dict[str, str], cwd: Path = REPO, timeout: float = COMMAND_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def server(local_prefect_server) -> tuple[str, dict[str, str]]:
    """(API URL, environment for the CLI commands) of the session's server."""
    api, env = local_prefect_server
    quick = {"PREFECT_CLI_PROMPT": "false", "PREFECT_WORKER_QUERY_SECONDS": "1"}  # workers poll every 10 s by default
    return api, {**{key: value for key, value in env.items() if key != "OPENAI_API_KEY"}, **quick}


def api_json(method: str, url: str, **kwargs: Any) -> Any:
    """The JSON answer of one API request, retried while the server is too busy to answer (a read timeout,
    a refused connection, a 5xx): under load it answers late, not never."""
    deadline = time.monotonic() + REQUEST_DEADLINE_S
    while True:
        try:
            return httpx.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs).raise_for_status().json()
        except (httpx.TransportError, httpx.HTTPStatusError) as error:
            transient = isinstance(error, httpx.TransportError) or error.response.status_code >= 500
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(1)


def flow_runs_of(api: str, deployment: str) -> list[dict[str, Any]]:
    found = api_json("GET", f"{api}/deployments/name/actalign/{deployment}")
    body = {"deployments": {"id": {"any_": [found["id"]]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return api_json("POST", f"{api}/flow_runs/filter", json=body)


def wait_for_final_run(api: str, deployment: str, timeout: float, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = flow_runs_of(api, deployment)
        if runs and runs[0]["state_type"] in FINAL_STATES:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no finished run of {deployment} within {timeout} s; worker log:\n{tail(log)}")


def workdir_runs(workdir: Path) -> list[tuple]:
    import duckdb

    with duckdb.connect(str(workdir / "actalign.duckdb"), read_only=True) as db:
        return db.sql("SELECT state, model, config FROM runs ORDER BY started_at").fetchall()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_deploy_run_and_prompt_trigger_against_a_local_server(server, demo_dataset, tmp_path):
    api, env = server
    manifest, classes = demo_dataset
    workdir = tmp_path / "work"
    file_config = {"videos": str(manifest), "classes": str(classes), "model": "tiny-random", "workdir": str(workdir)}

    # The triggered deployment: LLM-written scripts (all classes step-less) from a loopback server,
    # with a template file that `actalign prompt publish` announces.
    step_less = without_texts(classes, tmp_path / "classes-step-less.yaml")
    template = yaml.safe_load((Path(actalign.__file__).parent / "prompts" / "context-rich.yaml").read_text())
    template["name"], template["system"] = "deploy-test", template["system"] + "Marker: published for the deployment test.\n"
    template_file = tmp_path / "deploy-test.yaml"
    template_file.write_text(yaml.safe_dump(template, sort_keys=False))

    with LLMServer(good(5)) as llm:
        llm_settings = {"base_url": llm.base_url, "backoff_initial": 0.01, "requests_per_minute": None}
        prompt_config = {**file_config, "classes": str(step_less), "provider": "openai", "llm": llm_settings, "prompts": {"steps": str(template_file)}}

        # The repository's prefect.yaml, only the parameters replaced; deployed from the repository root.
        spec = prefect_yaml()
        for deployment in spec["deployments"]:
            if deployment["entrypoint"].endswith(":scheduled_pipeline"):  # the sweep's is deployed as written, not run
                deployment["parameters"] = {"config": prompt_config if deployment["name"] == "on-prompt-change" else file_config}
        test_yaml = tmp_path / "prefect.yaml"
        test_yaml.write_text(yaml.safe_dump(spec, sort_keys=False))
        pool = spec["deployments"][0]["work_pool"]["name"]

        run([str(BIN / "prefect"), "work-pool", "create", "--type", "process", pool], env)
        # The worker starts elsewhere (while the deploy runs): runs find the code through the
        # deployment's working_dir, filled in from the deploying shell's PWD.
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        worker_log = tmp_path / "worker.log"
        worker_command = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1"]
        with background(worker_command, env={**env, "PWD": str(elsewhere)}, cwd=elsewhere, log=worker_log):
            run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(test_yaml)], {**env, "PWD": str(REPO)})
            swept = api_json("GET", f"{api}/deployments/name/actalign-sweep/sweep-on-demand")  # its entrypoint loaded
            assert swept["parameters"] == {"grid_file": "project/sweep.yaml"} and "grid_file" in swept["parameter_openapi_schema"]["properties"]
            run_command = [str(BIN / "prefect"), "deployment", "run", "actalign/on-demand", "--params", json.dumps({"config": file_config})]
            watched = subprocess.Popen([*run_command, "--watch", "--watch-timeout", str(RUN_TIMEOUT_S)], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                # Meanwhile (one run at a time: --limit 1): a parameter that breaks the flow's
                # schema is refused before a run exists, and the prompt event queues a triggered run.
                bad = run([*run_command[:-1], json.dumps({"config": {**file_config, "fps": -1}})], env, check=False)
                assert bad.returncode == 1 and "Validation failed" in bad.stdout + bad.stderr
                published = run([str(BIN / "actalign"), "prompt", "publish", str(template_file)], env, cwd=tmp_path)
                assert PUBLISHED_EVENT in published.stdout and "actalign.prompt.deploy-test" in published.stdout
                watched_output, _ = watched.communicate(timeout=RUN_TIMEOUT_S + 60)
            finally:
                watched.kill()
            assert watched.returncode == 0 and "Completed" in watched_output, f"{watched_output}\nworker log:\n{tail(worker_log)}"

            triggered = wait_for_final_run(api, "on-prompt-change", RUN_TIMEOUT_S, worker_log)
            assert triggered["state_type"] == "COMPLETED", f"{triggered['state']}\nworker log:\n{tail(worker_log)}"

        assert llm.calls and all("Marker: published for the deployment test." in call.messages[0]["content"] for call in llm.calls)

    # Both runs were queued while the worker was busy; which one it takes first is Prefect's choice.
    runs = sorted(((state, model, json.loads(config)) for state, model, config in workdir_runs(workdir)), key=lambda run: run[2]["provider"])
    assert [(state, model, config["provider"]) for state, model, config in runs] == [("completed", "tiny-random", "file"), ("completed", "tiny-random", "openai")]
    assert runs[1][2]["prompts"]["steps"] == str(template_file)

    # The event carries the template's name, path and hash.
    events = api_json("POST", f"{api}/events/filter", json={"filter": {"event": {"name": [PUBLISHED_EVENT]}}})
    payload = events["events"][0]["payload"]
    assert payload["name"] == "deploy-test" and payload["path"] == str(template_file)
    assert payload["template_hash"] == load_template(template_file).template_hash
