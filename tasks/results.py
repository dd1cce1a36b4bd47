"""A run's ``results.json`` in the layout of EleutherAI's lm-evaluation-harness, for tools that read that layout.

Written once by the run, beside ``report.md``. The numbers are the ``accuracy``
view's (``queries.tables.accuracy_rows``), the configuration is the run
record's with the report's redaction, so the file never says more than the
report does. Prefect-free and torch-free: ``tasks.prefect_tasks`` wraps it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actalign.config import RunConfig
from actalign.errors import InputError
from actalign.llm.prompts import load_template
from actalign.queries import stats, tables
from actalign.queries.report.redact import redact
from actalign.queries.runner import Session
from actalign.storage.atomic import write_text_atomic
from actalign.storage.safe_paths import contained
from actalign.storage.workdir import Workdir
from actalign.versions import git_commit, package_versions

RESULTS_VERSION = 1
FILENAME = "results.json"
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # e.g. 20260101-000000-ab12cd: one folder name, never a path


def results_path(workdir: Workdir, run_id: str) -> Path:
    """``runs/<run_id>/results.json``; refuses a run id that could point outside the workdir's runs."""
    if not _PLAIN_ID.fullmatch(run_id):
        raise InputError(f"run id {run_id!r} is not a plain id (letters, digits, '.', '_', '-')")
    return workdir.run_dir(run_id) / FILENAME


def build_results(workdir: Workdir, run_id: str, final: Mapping[str, Any] | None = None, db: Session | None = None) -> dict[str, Any]:
    """The file's content. ``final``: record fields (state, finished_at, n_failed, stage_keys) of a run that
    writes its final record only after its results, as ``build_report`` takes them; ``db``: a session to ask in."""
    with tables.open_source(db or workdir) as s:
        info = tables.run_info(s, run_id)
        if info is None:
            raise InputError(f"no run {run_id!r} in {workdir.root}")
        info = {**info, **(final or {})}
        rows = {row["scorer"]: row for row in tables.accuracy_rows(s, [run_id])}
    stored = json.loads(info["config"])
    config = RunConfig.model_validate(stored)
    stage_keys = info["stage_keys"]  # JSON text in a record, a dict in ``final``
    model = (json.loads(stage_keys) if isinstance(stage_keys, str) else stage_keys or {}).get("model", {})
    scorers = list(dict.fromkeys([*config.scorers, *rows]))  # the accuracy view has no rows for a run without labels
    results = {scorer: _metrics(scorer, rows.get(scorer, {})) for scorer in scorers}
    started, finished = info["started_at"], info["finished_at"]
    return {
        "actalign_results_version": RESULTS_VERSION,
        "run_id": run_id,
        "state": info["state"],
        "date": _iso(started),
        "end_time": _iso(finished),
        "total_evaluation_time_seconds": round((finished - started).total_seconds(), 3) if finished else None,
        "results": results,
        "n-samples": {scorer: {"original": info["n_videos"], "effective": result["n"]} for scorer, result in results.items()},
        "config": {
            **redact(stored),
            "model": info["model"],
            "model_revision": config.revision,
            "model_fingerprint": model.get("fingerprint"),
            "model_trained": info["model_trained"],
            "model_caveat": info["model_caveat"],
        },
        "versions": package_versions(),
        "git_hash": git_commit(),
        "prompt_hashes": {kind: _prompt_hash(config, kind) for kind in config.text_kinds()},
    }


def write_results(workdir: Workdir, run_id: str, final: Mapping[str, Any] | None = None, db: Session | None = None) -> Path:
    """Build and write ``runs/<run_id>/results.json`` atomically (a reader sees the old file or the new one)."""
    path = contained(workdir.root, results_path(workdir, run_id))
    text = json.dumps(build_results(workdir, run_id, final, db), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text_atomic(text, path)


def _metrics(scorer: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """One accuracy view row under lm-eval metric names ("<metric>,<filter>"; no filters here, so "none");
    top-1 is "acc". ``row`` is empty for a scorer of a run without labelled videos."""
    n = row.get("n", 0)
    metrics: dict[str, Any] = {"alias": scorer}
    for k in stats.TOPK:
        name, value = "acc" if k == 1 else f"top{k}", row.get(f"top{k}")
        metrics[f"{name},none"] = value
        metrics[f"{name}_stderr,none"] = None if value is None else math.sqrt(value * (1 - value) / n)
    return {**metrics, "n": n, "missing": row.get("n_missing", 0)}


def _prompt_hash(config: RunConfig, kind: str) -> str | None:
    """The template's content hash, the one script keys use; None for an unreadable template of a file-provider
    run, which never reads its templates (it must not fail at its end for one)."""
    try:
        return load_template(config.prompt_for(kind)).template_hash
    except InputError:
        if config.provider != "file":
            raise
        return None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None
