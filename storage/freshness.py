"""What a run would recompute, and why: a freshness plan made from the stage keys before any work.

Every stage output is addressed by its key (``actalign.stages``); an item is
fresh when its output is in the store and readable, stale otherwise. The flow
writes its plan to ``runs/<run>/plan.parquet`` (also the list of store entries
the run references, which ``actalign gc`` keeps); ``actalign status`` makes the
same plan without running and writes ``plans/status.parquet``. Both are the
``freshness`` view.

A stale item's reason compares it with the previous run's plan: a stage
setting that changed ("fps 4.0 -> 2.0", a setting as ``actalign.stages``
declares it), an item that is new, an input that changed upstream, or an
output missing or corrupt in the store.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actalign import stages
from actalign.config import RunConfig
from actalign.inputs import Inputs
from actalign.manifest import VideoSpec
from actalign.registry import ModelIdentity
from actalign.script_assignment import ScriptAssignment, assign_scripts, request_item
from actalign.storage import schemas
from actalign.storage.embeddings import PairScores, read_pair_scores
from actalign.storage.integrity import Stored, inspect
from actalign.storage.parquet import write_atomic
from actalign.storage.records import now
from actalign.storage.workdir import SCHEMA, Workdir

FRESH, STALE, ERROR = "fresh", "stale", "error"
STAGES = (stages.ACQUIRE.name, stages.SCRIPTS.name, stages.TEXTS.name, stages.SCORE.name)


@dataclass(frozen=True)
class PlanItem:
    stage: str
    item: str
    key: str | None
    path: str | None  # relative to the workdir
    state: str
    reason: str = ""


@dataclass
class Previous:
    """The latest earlier run's plan: its keys by (stage, item) and its stage settings."""

    run_id: str | None = None
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, workdir: Workdir, before: str | None = None) -> Previous:
        """Run ids sort by start time; a damaged plan file is skipped (the run before it is used)."""
        runs = sorted(p.parent.name for p in (workdir.root / "runs").glob("*/plan.parquet") if p.parent.name not in (SCHEMA, before))
        for run_id in reversed(runs):
            try:
                table = pq.read_table(workdir.plan_path(run_id), columns=["stage", "item", "key", "settings"])
            except (OSError, pa.ArrowException):
                continue
            stage, item, key, recorded = (table.column(name).to_pylist() for name in ("stage", "item", "key", "settings"))
            settings = {name: json.loads(text) for name, text in {name: text for name, text in zip(stage, recorded) if text}.items()}  # one per stage
            return cls(run_id, dict(zip(zip(stage, item), key)), settings)
        return cls()


@dataclass
class FreshnessPlan:
    """Every item a run needs, fresh or stale (and why), and the stage settings it was judged with."""

    items: list[PlanItem]
    settings: dict[str, dict[str, Any]]
    previous_run: str | None
    unsettled: dict[str, set[str]] = field(default_factory=dict)  # stage -> videos with an item not fresh (acquire, score)

    def stale(self, stage: str) -> list[PlanItem]:
        return [item for item in self.items if item.stage == stage and item.state == STALE]

    def counts(self) -> dict[str, Counter]:
        """stage -> {state: items}."""
        counts: dict[str, Counter] = {stage: Counter() for stage in STAGES}
        for item in self.items:
            counts[item.stage][item.state] += 1
        return counts

    def reasons(self, stage: str) -> Counter:
        return Counter(item.reason for item in self.items if item.stage == stage and item.state != FRESH)

    def write(self, workdir: Workdir, run_id: str | None) -> str:
        """Store the plan (a run's, or `actalign status`'s when ``run_id`` is None); returns its id."""
        plan_id, created = uuid.uuid4().hex[:12], now()
        settings = {stage: json.dumps(value, sort_keys=True, default=str) for stage, value in self.settings.items()}
        count = len(self.items)
        columns = {name: [getattr(item, name) for item in self.items] for name in ("stage", "item", "key", "path", "state", "reason")}
        columns |= {"plan_id": [plan_id] * count, "run_id": [run_id] * count, "created_at": [created] * count, "settings": [settings.get(stage) for stage in columns["stage"]]}
        write_atomic(pa.Table.from_pydict(columns, schema=schemas.PLANS), workdir.plan_path(run_id))
        return plan_id


def plan_run(
    workdir: Workdir,
    config: RunConfig,
    inputs: Inputs,
    model: ModelIdentity,
    source_of: Callable[[VideoSpec], str],
    assignments: list[ScriptAssignment] | None = None,
    previous: Previous | None = None,
) -> FreshnessPlan:
    """Every item of every stage the run needs, with its key and whether the store already has it.

    ``source_of``: what a video's frames key hashes of its source (the acquire stage's ``source_fingerprint``).
    """
    settings = stages.run_settings(config, model)
    judge = _Judge(workdir, previous if previous is not None else Previous.load(workdir), settings)
    items: list[PlanItem] = []

    acquire = stages.ACQUIRE.name
    frames: dict[str, str] = {}
    for video in inputs.videos:
        try:
            key = stages.frames_key(video, source_of(video), config, model)
        except Exception as exc:  # e.g. a missing file: the run records it as a failed video
            items.append(PlanItem(acquire, video.video_id, None, None, ERROR, str(exc)))
            continue
        frames[video.video_id] = key
        items.append(judge(acquire, video.video_id, key, workdir.frames_path(key), "new video", "video file or segment changed"))
    unsettled = {acquire: {item.item for item in items if item.state != FRESH}, stages.SCORE.name: set()}

    assignments = assignments if assignments is not None else [assign_scripts(inputs.classes, inputs.videos, config, k) for k in config.text_kinds()]
    embeds: dict[str, str] = {}  # script key -> embedding key
    for assignment in assignments:
        labels = _script_labels(assignment)
        for request in assignment.requests:
            missing = [k for k in request.script_keys if inspect(workdir.script_path(k)) is not Stored.OK]
            path = workdir.script_path(missing[0] if missing else request.script_keys[0])
            items.append(judge(stages.SCRIPTS.name, f"{assignment.kind}/{request_item(request)}", request.key, path, "new question", "prompt or LLM settings changed"))
        for key, spec in assignment.classes.items():
            if spec.texts(assignment.kind):
                items.append(judge(stages.SCRIPTS.name, labels[key], key, workdir.script_path(key), "new class", "hand-written texts changed"))
        for key in assignment.classes:
            embeds[key] = stages.embed_key(key, config, model)
            items.append(judge(stages.TEXTS.name, labels[key], embeds[key], workdir.step_embeddings_path(embeds[key]), "new class", "its script changed"))

    kinds = {a.kind: a for a in assignments}
    for video in inputs.videos:
        if video.video_id not in frames:
            unsettled[stages.SCORE.name].add(video.video_id)
            continue
        frames_key = frames[video.video_id]
        cache_path = workdir.pair_scores_path(frames_key)
        cache, relative = _cached_pairs(workdir, cache_path), str(cache_path.relative_to(workdir.root))
        upstream = "frames changed (acquire)" if judge.changed(acquire, video.video_id, frames_key) else ""
        for candidate in video.candidates:
            keys = {kind: embeds[a.keys[video.video_id][candidate]] for kind, a in kinds.items() if candidate in a.keys.get(video.video_id, {})}
            for name in config.scorers:
                key = stages.pair_key(name, config, model, frames_key, keys)
                item = f"{video.video_id}/{candidate}/{name}"
                items.append(judge.pair(item, video.video_id, key, name, cache, relative, upstream))
                if items[-1].state != FRESH:
                    unsettled[stages.SCORE.name].add(video.video_id)
    return FreshnessPlan(items, settings, judge.previous.run_id, unsettled)


def _script_labels(assignment: ScriptAssignment) -> dict[str, str]:
    """script key -> "<kind>/<class>" (and the question, for a script written for one candidate set)."""
    labels = {}
    for key, spec in assignment.classes.items():
        labels[key] = f"{assignment.kind}/{spec.class_id}"
    for request in assignment.requests:
        if request.per_question:
            for key in request.script_keys:
                labels[key] += f" in [{request_item(request)}]"
    return labels


def _cached_pairs(workdir: Workdir, path: Path) -> PairScores | Stored:
    """A video's pair-score cache, read as the score stage reads it: it finds the read remembered."""
    state = inspect(path)
    if state is not Stored.OK:
        return state
    return read_pair_scores(path)


class _Judge:
    """Fresh or stale, and why, against the store and the previous run's plan."""

    def __init__(self, workdir: Workdir, previous: Previous, settings: dict[str, dict[str, Any]]) -> None:
        self.workdir, self.previous, self.settings = workdir, previous, settings

    def changed(self, stage: str, item: str, key: str) -> bool:
        return self.previous.keys.get((stage, item), key) != key

    def __call__(self, stage: str, item: str, key: str, path: Any, new: str, upstream: str) -> PlanItem:
        state = inspect(path)
        relative = str(path.relative_to(self.workdir.root))
        if state is Stored.OK:
            return PlanItem(stage, item, key, relative, FRESH)
        diff = _diff(self.previous.settings.get(stage), self.settings[stage])
        return PlanItem(stage, item, key, relative, STALE, self._reason(stage, item, key, state, new, lambda: diff or upstream))

    def pair(self, item: str, video_id: str, key: str, scorer: str, cache: Mapping[str, Any] | Stored, relative: str, upstream: str) -> PlanItem:
        score = stages.SCORE
        if not isinstance(cache, Stored) and key in cache:
            return PlanItem(score.name, item, key, relative, FRESH)
        old = self.previous.settings.get(score.name)
        if old is not None and scorer not in old.get("scorers", []):
            new = f"scorer {scorer} added"
        elif self.previous.run_id and (stages.ACQUIRE.name, video_id) not in self.previous.keys:
            new = "new video"
        else:
            new = "new candidate"

        def changed() -> str:
            diff = _diff(score.item_values(old, scorer), score.item_values(self.settings[score.name], scorer)) if old else ""
            return "; ".join(part for part in (diff, upstream) if part) or "texts changed (scripts)"

        state = cache if isinstance(cache, Stored) else Stored.MISSING
        return PlanItem(score.name, item, key, relative, STALE, self._reason(score.name, item, key, state, new, changed))

    def _reason(self, stage: str, item: str, key: str, state: Stored, new: str, changed: Callable[[], str]) -> str:
        if state is Stored.CORRUPT:
            return "stored file corrupt"
        if self.previous.run_id is None:
            return "never computed"
        old = self.previous.keys.get((stage, item))
        if old is None:
            return new
        if old == key:
            return f"missing from the store (run {self.previous.run_id} failed or was interrupted, or gc removed it)"
        return changed()


def _diff(old: Mapping[str, Any] | None, new: Mapping[str, Any], prefix: str = "") -> str:
    """ "fps 4.0 -> 2.0; steps.template_hash ab12 -> cd34" (nothing when there is no earlier run)."""
    if old is None:
        return ""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changes.append(_diff(before, after, f"{prefix}{name}."))
        elif before != after and name != "scorers":  # an added scorer is a new item, not a changed one
            changes.append(f"{prefix}{name} {before} -> {after}")
    return "; ".join(change for change in changes if change)


def describe_plan(plan: FreshnessPlan) -> str:
    """One line per stage: how many items are stale of how many, and the commonest reasons."""
    lines = []
    for stage, counts in plan.counts().items():
        total, stale = sum(counts.values()), counts[STALE] + counts[ERROR]
        reasons = ", ".join(f"{reason}: {n}" for reason, n in plan.reasons(stage).most_common(3))
        lines.append(f"{stage}: {stale} of {total} to compute" + (f" ({reasons})" if reasons else ""))
    return "; ".join(lines)
