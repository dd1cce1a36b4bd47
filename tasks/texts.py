"""Text stage: embed each stored script under the embedding key.

A text identical to one embedded before (same model and precision, in any class
or run) comes from the text cache instead of the encoder. A steps script is
embedded with its class-name text (for mean-pool); steps and
attribute keywords go through ``step_template`` ("<step> in <domain>"), and
storyboard sub-texts, full sentences, are embedded as written. Embedding keys
depend on the script key, the text templates and the checkpoint. A script whose
embedding file exists is not encoded again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actalign.classes import ClassSpec
from actalign.config import RunConfig, render_text
from actalign.registry import ModelIdentity, check_same_model, encoder_for
from actalign.stages import TEXTS, embed_key
from actalign.storage.embeddings import read_script_steps, write_text_embeddings
from actalign.storage.integrity import CORRUPT_NOTE, Stored, check
from actalign.storage.records import StatusRow, write_status
from actalign.storage.workdir import Workdir
from actalign.tasks.scripts import ScriptsResult
from actalign.text_cache import embed_texts_cached
from actalign.threads import apply, budget_for

if TYPE_CHECKING:
    from actalign.models import Encoder


@dataclass
class TextsResult:
    embed_keys: dict[str, str] = field(default_factory=dict)  # script key -> embedding key, for scripts that succeeded
    encoded_texts: int = 0
    reused: int = 0
    failed: int = 0
    encoder: dict | None = None  # the loaded encoder's settings (None: nothing needed encoding)


def _encoder(config: RunConfig, model: ModelIdentity, result: TextsResult) -> Encoder:
    """The run's encoder, loaded on the first text to encode and checked against the planned model."""
    encoder = encoder_for(config)
    if result.encoder is None:
        check_same_model(model, encoder.identity)
        result.encoder = encoder.settings()
    return encoder


ROW_KIND = {"steps": "step", "attributes": "attribute", "subtexts": "subtext"}


def texts_to_encode(spec: ClassSpec, kind: str, stored: list[str], config: RunConfig) -> list[tuple[str, int, str]]:
    """(row kind, index, text) of everything one script's embedding file holds."""
    if kind == "subtexts":
        return [(ROW_KIND[kind], i, text) for i, text in enumerate(stored)]
    rows = [(ROW_KIND[kind], i, render_text(config.step_template, domain=spec.domain, step=text)) for i, text in enumerate(stored)]
    if kind == "steps":
        rows.append(("name", -1, render_text(config.name_template, domain=spec.domain, action=spec.action)))
    return rows


def encode_texts(
    workdir: Workdir, run_id: str, scripts: dict[str, tuple[ClassSpec, str]], written: list[ScriptsResult], config: RunConfig, model: ModelIdentity
) -> TextsResult:
    """``scripts``: script key -> (its class, its kind); the keys that ``written`` reports as failed
    have no stored script and are left out. Keys come from the planned ``model``; the weights are
    loaded only when a text needs encoding."""
    apply(budget_for(config.workers))  # in this thread, before any torch call (actalign.threads)
    failed = set().union(*(w.failed_keys for w in written))
    result, rows = TextsResult(), []
    for script_key, (spec, kind) in scripts.items():
        if script_key in failed:
            continue
        started = time.perf_counter()
        try:
            key = embed_key(script_key, config, model)
            path = workdir.step_embeddings_path(key)
            stored = check(workdir, path)
            if stored is Stored.OK:
                result.reused += 1
                rows.append(StatusRow(TEXTS.name, spec.class_id, "skipped", key, message="reused from the store"))
            else:
                texts = texts_to_encode(spec, kind, read_script_steps(workdir.script_path(script_key)), config)
                embeddings, encoded = embed_texts_cached(_encoder(config, model, result), [text for _, _, text in texts], workdir.text_cache_dir)
                write_text_embeddings(path, class_id=spec.class_id, texts=texts, embeddings=embeddings, model=model.model_id, embed_key=key)
                result.encoded_texts += encoded
                note = CORRUPT_NOTE if stored is Stored.CORRUPT else None
                rows.append(StatusRow(TEXTS.name, spec.class_id, "ok", key, message=note, seconds=time.perf_counter() - started))
            result.embed_keys[script_key] = key
        except Exception as exc:  # one script failing leaves the others usable
            result.failed += 1
            rows.append(StatusRow.failed(TEXTS.name, spec.class_id, exc, time.perf_counter() - started, key=script_key))
    write_status(workdir, run_id, TEXTS.name, "all", rows)
    return result
