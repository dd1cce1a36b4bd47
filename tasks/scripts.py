"""Scripts stage: store each script of an assignment (``actalign.script_assignment``) not yet stored.

The kinds (``actalign.classes.TEXT_KINDS``) are the ordered steps, and, when a
scorer needs them, attribute keywords and storyboard sub-texts; each kind has
its own prompt template and is handled alike. Hand-written texts (the classes
file) are stored at once. The other classes go to the LLM provider, in the
requests the assignment lists. A request whose scripts are all stored is not
sent again, so editing a prompt template regenerates exactly the scripts whose
key changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from actalign.classes import ClassSpec
from actalign.llm import GeneratedScript, ScriptGenerationError, ScriptRequest
from actalign.script_assignment import ScriptAssignment, request_item
from actalign.scripts import make_provider
from actalign.stages import SCRIPTS
from actalign.storage import schemas
from actalign.storage.integrity import Stored, check
from actalign.storage.parquet import write_atomic
from actalign.storage.records import StatusRow, write_status
from actalign.storage.workdir import Workdir


@dataclass
class ScriptsResult:
    failed_keys: set[str] = field(default_factory=set)  # script keys left without a script
    llm_requests: int = 0  # HTTP answers received from the LLM, follow-ups included
    generated: int = 0
    reused: int = 0


def write_scripts(workdir: Workdir, run_id: str, assignment: ScriptAssignment) -> ScriptsResult:
    """Store every script the assignment needs; a failed LLM request fails only its own keys."""
    result, rows, requests_log = ScriptsResult(), [], []
    kind = assignment.kind
    for key, spec in assignment.classes.items():
        if spec.texts(kind):
            if stored(workdir, key):
                result.reused += 1
            else:
                _store(workdir, key, spec, kind, spec.texts(kind), "file")
                result.generated += 1
    pending = [r for r in assignment.requests if not all(stored(workdir, k) for k in r.script_keys)]
    result.reused += sum(len(r.script_keys) for r in assignment.requests if r not in pending)
    rows += [StatusRow(SCRIPTS.name, request_item(r), "skipped", r.key, message="reused from the store") for r in assignment.requests if r not in pending]
    if pending:
        provider = make_provider("openai", assignment.llm, assignment.prompt)
        started = time.perf_counter()
        batch = provider.generate_many(pending)
        seconds = time.perf_counter() - started
        for request in pending:
            if request.key in batch.failures:
                exc = batch.failures[request.key]
                result.failed_keys.update(request.script_keys)
                result.llm_requests += exc.requests
                rows.append(StatusRow.failed(SCRIPTS.name, request_item(request), exc, seconds, key=request.key))
                requests_log.append(_failed_request(run_id, request, exc, provider.settings.model, provider.template.name))
                continue
            scripts = batch.scripts[request.key]
            for generated in scripts.values():
                _store(workdir, generated.key, assignment.classes[generated.key], kind, generated.steps, provider.name, generated)
                result.generated += 1
            first = next(iter(scripts.values()))
            result.llm_requests += first.requests
            rows.append(StatusRow(SCRIPTS.name, request_item(request), "ok", request.key, attempts=first.requests, seconds=seconds))
            requests_log.append(_request_row(run_id, request, first))
    write_status(workdir, run_id, SCRIPTS.name, kind, rows)
    if requests_log:
        write_atomic(pa.Table.from_pylist(requests_log, schema=schemas.LLM_REQUESTS), workdir.llm_requests_path(run_id, kind))
    return result


def stored(workdir: Workdir, key: str) -> bool:
    """The script is stored and readable (a corrupt file is quarantined and written again)."""
    return check(workdir, workdir.script_path(key)) is Stored.OK


def _store(
    workdir: Workdir, key: str, spec: ClassSpec, kind: str, texts: Sequence[str], provider: str, generated: GeneratedScript | None = None
) -> None:
    rows = [
        {
            "class_id": spec.class_id,
            "kind": kind,
            "domain": spec.domain,
            "action": spec.action,
            "step_idx": index,
            "text": text,
            "provider": provider,
            "script_key": key,
            "model": generated.model if generated else None,
            "template": generated.template if generated else None,
            "template_hash": generated.template_hash if generated else None,
            "request_key": generated.request_key if generated else None,
        }
        for index, text in enumerate(texts)
    ]
    write_atomic(pa.Table.from_pylist(rows, schema=schemas.SCRIPTS), workdir.script_path(key))


def _request_row(run_id: str, request: ScriptRequest, generated: GeneratedScript) -> dict:
    return {
        "run_id": run_id,
        "request_key": request.key,
        "domain": request.domain,
        "actions": list(request.actions),
        "state": "ok",
        "model": generated.model,
        "response_model": generated.response_model,
        "template": generated.template,
        "response_format": generated.response_format,
        "requests": generated.requests,
        "prompt_tokens": generated.prompt_tokens,
        "completion_tokens": generated.completion_tokens,
        "raw_response": generated.raw_response,
    }


def _failed_request(run_id: str, request: ScriptRequest, exc: ScriptGenerationError, model: str, template: str) -> dict:
    return {
        "run_id": run_id,
        "request_key": request.key,
        "domain": request.domain,
        "actions": list(request.actions),
        "state": "failed",
        "model": model,
        "template": template,
        "requests": exc.requests,
        "raw_response": "\n---\n".join(exc.raw_answers) if exc.raw_answers else exc.raw_answer,
        "error_class": exc.error_class,
        "message": str(exc),
    }
