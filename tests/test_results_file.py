"""runs/<run>/results.json: written by a real pipeline run (tiny untrained model, generated demo videos, the shared
Prefect test server), in the lm-evaluation-harness layout, with the accuracy view's numbers and no secret."""

from __future__ import annotations

import json
import re
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

import pytest

from actalign.config import RunConfig
from actalign.errors import InputError
from actalign.llm.prompts import load_template
from actalign.queries.runner import run_sql
from actalign.storage.workdir import Workdir
from actalign.tasks.results import write_results
from actalign.threads import budget_for
from actalign.versions import PACKAGES

SECRETS = ("secret-pw",)


@pytest.fixture(scope="module")
def run(demo_dataset, tmp_path_factory, prefect_harness):
    from actalign.flows.pipeline import run_pipeline

    manifest, classes = demo_dataset
    config = RunConfig(
        videos=manifest, classes=classes, workdir=tmp_path_factory.mktemp("results") / "work", model="tiny-random", shard_size=4,
        scorers=("mean-pool", "actalign"),
        download={"proxy": "http://user:secret-pw@127.0.0.1:9"},  # local files: never used, never stored
        llm={"base_url": "http://llm.local:8000/v1"},  # never called; credentials or a query are refused (tests/test_secrets.py)
    )
    summary = run_pipeline(config)
    path = Path(summary.report).with_name("results.json")
    with open(path, encoding="utf-8") as handle:
        return config, summary, json.load(handle), path.read_text(encoding="utf-8")


def sql(summary, query: str) -> list[dict]:
    return run_sql(Workdir.open(summary.workdir), query, [summary.run_id]).records()


def test_results_json_sits_beside_the_report_with_the_documented_keys(run):
    _, summary, doc, _ = run
    assert Path(summary.workdir, "runs", summary.run_id, "results.json").is_file() and Path(summary.report).is_file()
    assert set(doc) == {"actalign_results_version", "run_id", "state", "date", "end_time", "total_evaluation_time_seconds",
                        "results", "n-samples", "config", "versions", "git_hash", "prompt_hashes"}
    assert doc["actalign_results_version"] == 1 and doc["run_id"] == summary.run_id and doc["state"] == summary.state == "completed"


def test_accuracy_and_counts_are_the_accuracy_views(run):
    _, summary, doc, _ = run
    view = {r["scorer"]: r for r in sql(summary, "SELECT scorer, n, n_missing, top1, top2, top3 FROM accuracy WHERE run_id = ?")}
    assert set(doc["results"]) == set(doc["n-samples"]) == set(view) == {"mean-pool", "actalign"}
    for scorer, row in view.items():
        result = doc["results"][scorer]
        assert result["alias"] == scorer and result["n"] == row["n"] == 6 and result["missing"] == row["n_missing"] == 0
        assert (result["acc,none"], result["top2,none"], result["top3,none"]) == (row["top1"], row["top2"], row["top3"])
        p = row["top1"]
        assert result["acc_stderr,none"] == pytest.approx((p * (1 - p) / row["n"]) ** 0.5)
        assert doc["n-samples"][scorer] == {"original": summary.n_videos, "effective": row["n"]}


def test_config_times_and_model_are_the_run_records(run):
    config, summary, doc, _ = run
    (record,) = sql(summary, "SELECT model, model_trained, model_caveat, stage_keys, started_at, finished_at FROM runs WHERE run_id = ?")
    assert doc["config"]["model"] == record["model"] and doc["config"]["model_revision"] is None
    stage_keys = json.loads(record["stage_keys"])
    assert doc["config"]["model_fingerprint"] == stage_keys["model"]["fingerprint"]
    # Each decoder side by side gets its share of the cores (actalign.threads), recorded with the run.
    decoders = stage_keys["decoding"]["decoders"]
    assert stage_keys["decoding"]["decoder_threads"] == budget_for(config.workers).decoder_threads(decoders) >= 1
    assert (doc["config"]["model_trained"], doc["config"]["model_caveat"]) == (record["model_trained"], record["model_caveat"]) == (False, summary.caveat)
    assert doc["config"]["scorers"] == ["mean-pool", "actalign"] and doc["config"]["fps"] == config.fps
    assert datetime.fromisoformat(doc["date"]) == record["started_at"] and datetime.fromisoformat(doc["end_time"]) == record["finished_at"]
    assert doc["total_evaluation_time_seconds"] == pytest.approx((record["finished_at"] - record["started_at"]).total_seconds(), abs=1e-3)


def test_versions_git_hash_and_prompt_hashes(run):
    config, _, doc, _ = run
    assert doc["versions"] == {name: version(name) for name in PACKAGES}
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", doc["git_hash"])
    assert doc["prompt_hashes"] == {kind: load_template(config.prompt_for(kind)).template_hash for kind in config.text_kinds()} == {
        "steps": load_template("context-rich").template_hash
    }


def test_no_secret_reaches_the_file(run):
    _, _, doc, text = run
    assert not any(secret in text for secret in SECRETS)
    assert "proxy" not in doc["config"]["download"] and "cookies" not in doc["config"]["download"]
    assert doc["config"]["llm"]["base_url"] == "http://llm.local:8000/v1"


def test_a_run_id_that_is_not_a_plain_id_is_refused(run):
    _, summary, _, _ = run
    for bad in ("../escape", "/tmp/x", "", ".hidden"):
        with pytest.raises(InputError, match="plain id"):
            write_results(Workdir.open(summary.workdir), bad)
