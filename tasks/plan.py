"""Before any work: read and validate the inputs, load the model, fix the run's identity.

Imports no torch until a model is loaded: `actalign status` plans with the inputs alone.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from actalign.actionatlas import load_actionatlas, question_classes, video_specs
from actalign.classes import TEXT_KINDS, ClassSpec, load_classes
from actalign.config import RunConfig
from actalign.errors import InputError
from actalign.manifest import VideoSpec, load_manifest
from actalign.registry import ModelIdentity, read_identity
from actalign.scripts import make_provider, validate_texts
from actalign.storage.records import now

if TYPE_CHECKING:
    from actalign.models import Encoder


@dataclass(frozen=True)
class Inputs:
    classes: list[ClassSpec]
    videos: list[VideoSpec]


def read_inputs(config: RunConfig) -> Inputs:
    """Parse the classes and the videos (a manifest, a folder or a benchmark), and check hand-written texts.

    Every problem is an InputError naming the input. With the ``file`` provider
    every class needs every kind of text the scorers use (steps; attributes for
    attribute-saliency; subtexts for storyboard); with ``openai`` the missing
    ones go to the LLM.
    """
    if config.benchmark == "actionatlas":
        classes, videos = _actionatlas(config)
    else:
        classes = load_classes(config.classes)
        videos = load_manifest(config.videos, classes)
    videos = videos[: config.limit]
    for spec in classes:
        for kind in config.text_kinds():
            if spec.texts(kind) is not None or config.provider == "file":
                validate_texts(spec, kind)
    return Inputs(classes=classes, videos=videos)


def load_inputs(config: RunConfig) -> Inputs:
    """``read_inputs``, and the script provider's credentials: everything a run checks before work."""
    inputs = read_inputs(config)
    make_provider(config.provider, config.llm).check_credentials()
    return inputs


def _actionatlas(config: RunConfig) -> tuple[list[ClassSpec], list[VideoSpec]]:
    """The benchmark's questions as videos and classes; a classes file, when given, supplies
    hand-written texts for the classes it names (by id, or by domain and action)."""
    questions = load_actionatlas(config.videos)
    joined = question_classes(questions)
    written = load_classes(config.classes) if config.classes else []
    by_id = {s.class_id: s for s in written}
    classes = [
        replace(spec, **{kind: match.texts(kind) for kind in TEXT_KINDS})
        if (match := by_id.get(spec.class_id) or _same_action(spec, written))
        else spec
        for spec in joined.classes
    ]
    return classes, video_specs(questions, joined)


def _same_action(spec: ClassSpec, written: list[ClassSpec]) -> ClassSpec | None:
    return next((w for w in written if w.action.casefold() == spec.action.casefold() and (w.domain or "").casefold() == (spec.domain or "").casefold()), None)


TORCH_THREADS_ENV = "ACTALIGN_TORCH_THREADS"


def torch_threads() -> int | None:
    """Intra-op threads torch should use in this process; None: leave torch's default.

    ``$ACTALIGN_TORCH_THREADS`` wins. Inside a Dask worker it is the worker's
    ``--nthreads``, the cores it claims: the encoder runs one batch at a time per
    process, so N worker processes on a machine use N x nthreads cores and never
    oversubscribe it (Dask's nanny sets OMP_NUM_THREADS=1, which would leave a
    single worker on a big machine with one core). Elsewhere: torch's default (all cores).
    """
    if value := os.environ.get(TORCH_THREADS_ENV, "").strip():
        if not value.isdigit() or int(value) < 1:
            raise InputError(f"{TORCH_THREADS_ENV}={value!r}: give a whole number of threads, at least 1")
        return int(value)
    if "distributed" in sys.modules:  # only a process that imported distributed can be a Dask worker
        from distributed import get_worker

        try:
            return max(1, get_worker().state.nthreads)
        except ValueError:  # not inside a Dask worker
            return None
    return None


@functools.cache
def _limit_torch_threads() -> None:
    """Once per process, before the first model load."""
    if (threads := torch_threads()) is not None:
        import torch

        torch.set_num_threads(threads)


def identity_for(config: RunConfig) -> ModelIdentity:
    """The run's model identity read from its files, nothing built or loaded (``ModelNotLocalError`` if not here yet)."""
    return read_identity(config.model, "bfloat16" if config.bf16 else "float32", config.revision)


def encoder_for(config: RunConfig) -> Encoder:
    """The run's encoder (cached per process, so every task in a process shares one model)."""
    from actalign.models import load_encoder

    _limit_torch_threads()
    return load_encoder(config.model, device=config.device, batch_size=config.batch_size, bf16=config.bf16, revision=config.revision)


def new_run_id() -> str:
    return f"{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def shards(videos: list[VideoSpec], size: int) -> list[list[VideoSpec]]:
    if size < 1:
        raise InputError(f"shard size must be at least 1, got {size}")
    return [videos[i : i + size] for i in range(0, len(videos), size)]
