"""Secrets a configuration cannot reach. Only the environment names the variable sent as the LLM API key
(ACTALIGN_LLM_API_KEY_ENV, and only *_API_KEY or *_TOKEN), so a config file or a deployment parameter cannot
send, say, AWS_SECRET_ACCESS_KEY to its base_url; and base_url holds no credentials or query, so neither
`actalign config`, a run record nor Prefect's parameters can show one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from llm_server import LLMServer, good

from actalign.config import make_config
from actalign.errors import InputError
from actalign.llm import LLMSettings, OpenAIScriptProvider

ACTALIGN = Path(sys.executable).parent / "actalign"  # the installed script, as a user runs it
INPUTS = ("--videos", "videos.csv", "--classes", "classes.yaml")  # `config` reads neither, and the others refuse before reading
PASSWORD = "hunter2-pw"
AWS_SECRET = "aws-secret-0123456789"
KEYLESS_URLS = [f"http://user:{PASSWORD}@127.0.0.1:9/v1", f"http://{PASSWORD}@127.0.0.1:9/v1", f"http://127.0.0.1:9/v1?key={PASSWORD}", f"http://127.0.0.1:9/v1#{PASSWORD}"]


def actalign(*args: object, cwd: Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (its words joined by single spaces: the terminal wraps it) of ``actalign ARGS``."""
    done = subprocess.run([str(ACTALIGN), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, " ".join(done.stderr.split())


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_credentials_in_the_llm_base_url_are_refused_and_never_printed(tmp_path: Path):
    for command in ("config", "run"):
        code, out, err = actalign(command, *INPUTS, "--workdir", tmp_path / "work", "--llm-base-url", KEYLESS_URLS[0], cwd=tmp_path)
        assert code == 2 and PASSWORD not in out + err, (command, out, err)
        assert "must not hold credentials" in err and "ACTALIGN_LLM_API_KEY_ENV" in err and "--llm-api-key-env" not in err
    assert not (tmp_path / "work").exists()  # refused before a run record, a plan or Prefect's database
    for url in KEYLESS_URLS:  # what the CLI, the Python API and `--config` build the configuration with
        with pytest.raises(ValueError, match="must not hold credentials") as refused:
            make_config({"videos": "v.csv", "classes": "c.yaml", "llm": {"base_url": url}})
        assert PASSWORD not in str(refused.value)


def test_a_deployment_refuses_them_when_a_run_is_created_before_prefect_stores_it():
    """Prefect checks parameters against the flow's schema (enforce_parameter_schema) before it creates the run."""
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools import ValidationError, validate

    from actalign.flows.deployments import scheduled_pipeline

    schema = parameter_schema(scheduled_pipeline.fn).model_dump_for_openapi()
    hostile = [{"base_url": url} for url in KEYLESS_URLS] + [{"base_url": "http://127.0.0.1:9/v1", "api_key_env": "AWS_SECRET_ACCESS_KEY"}]
    for llm in hostile:
        parameters = {"config": {"videos": "v.csv", "classes": "c.yaml", "provider": "openai", "llm": llm}}
        with pytest.raises(ValidationError):
            validate(parameters, schema, raise_on_error=True)
        with pytest.raises(ParameterTypeError, match="ACTALIGN_LLM_API_KEY_ENV"):  # a deployment without the schema check
            scheduled_pipeline.validate_parameters(parameters)
    validate({"config": {"videos": "v.csv", "classes": "c.yaml", "llm": {"base_url": "http://127.0.0.1:9/v1"}}}, schema, raise_on_error=True)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_api_key_env_in_a_config_file_is_refused_naming_the_environment_variable(tmp_path: Path):
    llm = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "AWS_SECRET_ACCESS_KEY"}
    config = {"videos": "videos.csv", "classes": "classes.yaml", "provider": "openai", "llm": llm}
    for name, data in (("run.yaml", config), ("parameters.yaml", {"config": config})):  # as `actalign config` prints it; a deployment's block
        (tmp_path / name).write_text(yaml.safe_dump(data))
        code, out, err = actalign("config", "--config", tmp_path / name, cwd=tmp_path)
        assert code == 2 and "api_key_env cannot be set" in err and "set ACTALIGN_LLM_API_KEY_ENV in the environment" in err, out + err

    code, out, _ = actalign("config", *INPUTS, "--llm-base-url", "http://127.0.0.1:9/v1", cwd=tmp_path)
    printed = yaml.safe_load(out)["llm"]
    assert code == 0 and printed["base_url"] == "http://127.0.0.1:9/v1" and "api_key_env" not in printed


def test_only_a_key_variable_named_by_the_environment_is_sent(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("TEAM_LLM_API_KEY", "sk-team-0123456789")
    with LLMServer(good()) as server:  # a loopback server: it needs no key, so nothing but the named variable is sent
        provider = OpenAIScriptProvider(LLMSettings(base_url=server.base_url, requests_per_minute=None))
        (request,) = provider.requests_for([("figure skating", ["Axel", "Lutz"])])
        for name in ("AWS_SECRET_ACCESS_KEY", "sk-pasted-by-mistake-0123456789"):
            monkeypatch.setenv("ACTALIGN_LLM_API_KEY_ENV", name)
            with pytest.raises(InputError, match="must name an environment variable ending in _API_KEY or _TOKEN") as refused:
                provider.check_credentials()
            assert name not in str(refused.value)
        monkeypatch.setenv("ACTALIGN_LLM_API_KEY_ENV", "TEAM_LLM_API_KEY")
        provider.generate(request)
    assert [call.headers["authorization"] for call in server.calls] == ["Bearer sk-team-0123456789"]  # the refused names sent nothing
