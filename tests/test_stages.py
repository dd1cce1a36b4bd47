"""A stage's settings are declared once (``actalign.stages``): its keys and the reasons a plan gives
both follow from that declaration, and a scorer's table entry decides whether its keys hash smoothing.

No model and no video is read: the plans run on hand-made inputs and an empty workdir."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from actalign import stages
from actalign.classes import ClassSpec
from actalign.config import RunConfig
from actalign.inputs import Inputs
from actalign.manifest import VideoSpec
from actalign.registry import ModelIdentity
from actalign.scorers import SCORERS, ActAlign, MeanPool, ScorerSpec, make_scorer
from actalign.stages import Setting
from actalign.storage.freshness import FreshnessPlan, plan_run
from actalign.storage.workdir import Workdir

MODEL = ModelIdentity("m", "m", None, "f0", True, None, "float32", (32, 32), 2.3, -10.0)
INPUTS = Inputs(
    [ClassSpec("spin", "spin", "dance", ("turn", "stop")), ClassSpec("jump", "jump", "dance", ("crouch", "leap"))],
    [VideoSpec(f"v{i}", f"/videos/v{i}.mp4", None, None, "dance", ("spin", "jump"), "spin") for i in range(2)],
)
EARLIER_RUN = "20250101-000000-aaaaaa"
NAMES = {"ACQUIRE": "acquire", "SCRIPTS": "scripts", "TEXTS": "step_embeddings", "SCORE": "score"}
DOWNSTREAM = {"acquire": {"score"}, "scripts": {"step_embeddings", "score"}, "step_embeddings": {"score"}, "score": set()}


def plan(workdir: Workdir, config: RunConfig) -> FreshnessPlan:
    return plan_run(workdir, config, INPUTS, MODEL, lambda video: f"content of {video.video_id}")


def keys(made: FreshnessPlan, stage: str) -> dict[str, str | None]:
    return {item.item: item.key for item in made.items if item.stage == stage}


@pytest.mark.parametrize("declaration", NAMES)
def test_a_setting_added_to_a_stage_changes_its_keys_and_is_the_reason_given(declaration, tmp_path: Path, monkeypatch):
    workdir = Workdir.open(tmp_path / "work")
    config = RunConfig(videos=tmp_path, classes=tmp_path / "classes.yaml", workdir=workdir.root)
    before = plan(workdir, config)
    before.write(workdir, EARLIER_RUN)

    stage = getattr(stages, declaration)
    assert stage.name == NAMES[declaration]
    monkeypatch.setattr(stages, declaration, replace(stage, settings=(*stage.settings, Setting("probe", lambda config, model: "on"))))
    after = plan(workdir, config)

    old, new = keys(before, stage.name), keys(after, stage.name)
    assert old.keys() == new.keys() and old and all(new[item] != old[item] for item in old)
    assert {item.reason for item in after.items if item.stage == stage.name} == {"probe None -> on"}
    assert after.settings[stage.name]["probe"] == "on"
    for other in set(NAMES.values()) - {stage.name} - DOWNSTREAM[stage.name]:
        assert keys(after, other) == keys(before, other), other


def test_a_smoothed_scorer_added_to_the_table_hashes_the_smoothing_width(tmp_path: Path, monkeypatch):
    """A new scorer marked ``smoothed`` is built with the run's width and its scores go stale when it changes; an unmarked one is neither."""
    monkeypatch.setitem(SCORERS, "actalign-wide", ScorerSpec("actalign-wide", partial(ActAlign, mode="global"), smoothed=True))
    monkeypatch.setitem(SCORERS, "mean-pool-again", ScorerSpec("mean-pool-again", MeanPool))
    workdir = Workdir.open(tmp_path / "work")
    config = RunConfig(videos=tmp_path, classes=tmp_path / "classes.yaml", workdir=workdir.root, scorers=("actalign-wide", "mean-pool-again"))
    before = plan(workdir, config)
    before.write(workdir, EARLIER_RUN)
    after = plan(workdir, config.model_copy(update={"smoothing": 3}))

    old, new = keys(before, "score"), keys(after, "score")
    assert {item for item in old if new[item] != old[item]} == {item for item in old if item.endswith("/actalign-wide")}
    reasons = {item.item.rsplit("/", 1)[1]: item.reason for item in after.items if item.stage == "score"}
    assert reasons["actalign-wide"] == "smoothing 0 -> 3" and reasons["mean-pool-again"].startswith("missing from the store")
    assert make_scorer("actalign-wide", smoothing=3) == ActAlign(smoothing=3) and make_scorer("mean-pool-again", smoothing=3) == MeanPool()
