"""Which script each (video, candidate) uses, per kind of text, and where each script comes from.

Pure: no request is sent and nothing is read from the store. A class with
hand-written texts of a kind keeps them; the others go to the LLM provider, one
request per question (a video's candidates without hand-written texts, so the
model contrasts them) or one per class, as ``LLMSettings.granularity`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

from actalign.classes import ClassSpec
from actalign.config import RunConfig
from actalign.llm import LLMSettings, ScriptRequest
from actalign.manifest import VideoSpec
from actalign.scripts import llm_provider
from actalign.stages import hand_written_key


@dataclass(frozen=True)
class ScriptAssignment:
    """For one kind of text: which script each (video, candidate) uses, and where each script comes from."""

    kind: str
    keys: dict[str, dict[str, str]]  # video_id -> class_id -> script key
    classes: dict[str, ClassSpec]  # script key -> its class
    requests: list[ScriptRequest]  # LLM requests covering every key without hand-written texts
    llm: LLMSettings | None  # the provider's settings (None: all hand-written)
    prompt: str | None  # this kind's prompt template (RunConfig.prompts)


def assign_scripts(classes: list[ClassSpec], videos: list[VideoSpec], config: RunConfig, kind: str = "steps") -> ScriptAssignment:
    """Script keys of one kind for every candidate of every video."""
    by_id = {spec.class_id: spec for spec in classes}
    provider = llm_provider(config, kind) if config.provider == "openai" else None
    keys: dict[str, dict[str, str]] = {}
    owners: dict[str, ClassSpec] = {}
    requests: dict[str, ScriptRequest] = {}
    for video in videos:
        specs = [by_id[c] for c in video.candidates]
        keys[video.video_id] = {}
        for spec in (s for s in specs if s.texts(kind)):
            key = hand_written_key(spec, kind, config)
            keys[video.video_id][spec.class_id] = key
            owners[key] = spec
        to_write = [s for s in specs if not s.texts(kind)]
        if provider is None or not to_write:
            continue
        for request in provider.requests_for(_groups(video, to_write, config)):
            requests.setdefault(request.key, request)
            for spec in to_write:
                if spec.action in request.actions and spec.domain_or(video.domain) == request.domain:
                    keys[video.video_id][spec.class_id] = request.key_of(spec.action)
                    owners[request.key_of(spec.action)] = spec
    return ScriptAssignment(kind=kind, keys=keys, classes=owners, requests=list(requests.values()),
        llm=config.llm if provider else None, prompt=config.prompt_for(kind) if provider else None,
    )


def llm_groups(classes: list[ClassSpec], videos: list[VideoSpec], config: RunConfig, kind: str = "steps") -> list[tuple[str | None, list[str]]]:
    """(domain, actions) of every LLM request of one kind the run needs, before deduplication (for the dry run)."""
    by_id = {spec.class_id: spec for spec in classes}
    groups = []
    for video in videos:
        to_write = [by_id[c] for c in video.candidates if not by_id[c].texts(kind)]
        if to_write:
            groups += _groups(video, to_write, config)
    return groups


def _groups(video: VideoSpec, specs: list[ClassSpec], config: RunConfig) -> list[tuple[str | None, list[str]]]:
    """(domain, actions) per request: the whole question, or each class on its own."""
    if config.llm.granularity == "question":
        domains = {spec.domain_or(video.domain) for spec in specs}
        if len(domains) == 1:
            return [(domains.pop(), [spec.action for spec in specs])]
    return [(spec.domain_or(video.domain), [spec.action]) for spec in specs]


def request_item(request: ScriptRequest) -> str:
    """How plans and status rows name a request: "<domain>: <action> | <action>"."""
    return f"{request.domain or '-'}: {' | '.join(request.actions)}"
