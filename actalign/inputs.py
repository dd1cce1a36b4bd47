"""Before any work: read and validate a run's inputs (classes and videos), and cut them into shards.

Imports no torch: `actalign status` plans with the inputs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from actalign.actionatlas import load_actionatlas, question_classes, video_specs
from actalign.classes import TEXT_KINDS, ClassSpec, load_classes
from actalign.config import RunConfig
from actalign.errors import InputError
from actalign.manifest import VideoSpec, load_manifest
from actalign.scripts import make_provider, validate_texts


@dataclass(frozen=True)
class Inputs:
    classes: list[ClassSpec]
    videos: list[VideoSpec]


def read_inputs(config: RunConfig) -> Inputs:
    """Parse the classes and the videos (a manifest, a folder or a benchmark), and check hand-written texts.

    Every problem is an InputError naming the input. With the ``file`` provider
    every class needs every kind of text the scorers use (steps; attributes for
    attribute-saliency; subtexts for storyboard); with ``openai`` the missing
    ones go to the LLM. Parsed once per process while the input files are
    unchanged: the CLI's preflight and the flow it starts share the result
    (callers never mutate it).
    """
    return _parsed(config, _file_states(config))


def _file_states(config: RunConfig) -> tuple:
    """What would make a second parse differ: each input file's (or folder's) identity, size and change time."""
    def state(path: Path | None) -> tuple | None:
        if path is None:
            return None
        try:
            found = path.stat()
        except OSError:
            return (str(path),)  # missing: parsed again, and refused with its own message
        return (str(path), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)

    return state(config.videos), state(config.classes)


@lru_cache(maxsize=4)
def _parsed(config: RunConfig, file_states: tuple) -> Inputs:
    if config.benchmark == "actionatlas":
        classes, videos = _actionatlas(config)
    else:
        classes = load_classes(config.classes)
        videos = load_manifest(config.videos, classes)
    videos = videos[: config.limit]
    for number, spec in enumerate(classes, start=1):
        for kind in config.text_kinds():
            if spec.texts(kind) is not None or config.provider == "file":
                try:
                    validate_texts(spec, kind)
                except InputError as exc:
                    raise InputError(f"{_class_origin(config, number)}: {exc}") from None
    return Inputs(classes=classes, videos=videos)


def _class_origin(config: RunConfig, number: int) -> str:
    """Where a class was written: the classes file and its entry, or the benchmark's questions."""
    if config.benchmark is None:
        return f"classes file {config.classes}, class #{number}"
    return f"benchmark {config.benchmark}" + (f" with classes file {config.classes}" if config.classes else "")


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


def shards(videos: list[VideoSpec], size: int) -> list[list[VideoSpec]]:
    """The videos in order, ``size`` per shard (a shard is one acquire and one score task)."""
    if size < 1:
        raise InputError(f"shard size must be at least 1, got {size}")
    return [videos[i : i + size] for i in range(0, len(videos), size)]
