"""Text stage: store each class's script, then embed its steps and its name under the embedding key.

Script keys depend on the class and the provider's configuration; embedding
keys on the script key, the text templates and the checkpoint. A class whose
embedding file exists is not encoded again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from actalign.classes import ClassSpec
from actalign.config import RunConfig, render_text
from actalign.keys import stage_key
from actalign.models import Encoder
from actalign.scripts import Script, make_provider
from storage import schemas
from storage.embeddings import write_text_embeddings
from storage.parquet import write_atomic
from storage.records import StatusRow, write_status
from storage.workdir import Workdir
from tasks.plan import encoder_for

SCRIPT_STAGE, SCRIPT_VERSION = "scripts", 1
EMBED_STAGE, EMBED_VERSION = "step_embeddings", 1


@dataclass
class TextsResult:
    script_keys: dict[str, str] = field(default_factory=dict)
    embed_keys: dict[str, str] = field(default_factory=dict)  # class_id -> key, for classes that succeeded
    encoded_texts: int = 0
    reused: int = 0
    failed: int = 0


def script_key(spec: ClassSpec, config: RunConfig) -> str:
    provider = make_provider(config.provider)
    return stage_key(SCRIPT_STAGE, SCRIPT_VERSION, {"class": asdict(spec), **provider.config()})


def embed_key(script_key_: str, config: RunConfig, encoder: Encoder) -> str:
    templates = {"step_template": config.step_template, "name_template": config.name_template, "dtype": encoder.dtype_name}
    return stage_key(EMBED_STAGE, EMBED_VERSION, templates, [script_key_, encoder.model_id, encoder.fingerprint])


def store_script(workdir: Workdir, spec: ClassSpec, script: Script, key: str) -> None:
    rows = [
        {
            "class_id": spec.class_id,
            "domain": spec.domain,
            "action": spec.action,
            "step_idx": index,
            "text": text,
            "provider": script.provider,
            "script_key": key,
        }
        for index, text in enumerate(script.steps)
    ]
    write_atomic(pa.Table.from_pylist(rows, schema=schemas.SCRIPTS), workdir.script_path(key))


def encode_texts(
    workdir: Workdir, run_id: str, classes: list[ClassSpec], scripts: dict[str, Script], config: RunConfig
) -> TextsResult:
    encoder = encoder_for(config)
    result, rows = TextsResult(), []
    for spec in classes:
        started = time.perf_counter()
        try:
            s_key = script_key(spec, config)
            if not workdir.script_path(s_key).exists():
                store_script(workdir, spec, scripts[spec.class_id], s_key)
            e_key = embed_key(s_key, config, encoder)
            path = workdir.step_embeddings_path(e_key)
            if path.exists():
                result.reused += 1
                rows.append(StatusRow(EMBED_STAGE, spec.class_id, "skipped", e_key, message="reused from the store"))
            else:
                steps = [render_text(config.step_template, domain=spec.domain, step=s) for s in scripts[spec.class_id].steps]
                name = render_text(config.name_template, domain=spec.domain, action=spec.action)
                embeddings = encoder.embed_texts([*steps, name])
                write_text_embeddings(
                    path, class_id=spec.class_id, steps=steps, name=name, embeddings=embeddings, model=encoder.model_id, embed_key=e_key
                )
                result.encoded_texts += len(embeddings)
                rows.append(StatusRow(EMBED_STAGE, spec.class_id, "ok", e_key, seconds=time.perf_counter() - started))
            result.script_keys[spec.class_id], result.embed_keys[spec.class_id] = s_key, e_key
        except Exception as exc:  # one class failing leaves the others usable
            result.failed += 1
            rows.append(StatusRow.failed(EMBED_STAGE, spec.class_id, exc, time.perf_counter() - started))
    write_status(workdir, run_id, EMBED_STAGE, "all", rows)
    return result


@task(name="encode-texts", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def encode_texts_task(
    workdir: Workdir, run_id: str, classes: list[ClassSpec], scripts: dict[str, Script], config: RunConfig
) -> TextsResult:
    return encode_texts(workdir, run_id, classes, scripts, config)
