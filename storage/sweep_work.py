"""What a sweep would compute, from the store as it is: each arm's freshness plan, and their union with
shared work counted once (``actalign sweep --dry-run``). Reads the store; imports no Prefect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from actalign.config import RunConfig
from actalign.frames import video_duration
from actalign.inputs import load_inputs
from actalign.llm.request_plan import estimate_tokens, plan_requests, price_of
from actalign.manifest import VideoSpec
from actalign.registry import fetch_identity
from actalign.script_assignment import assign_scripts, llm_groups
from actalign.scripts import llm_provider
from actalign.storage.freshness import ERROR, STALE, plan_run
from actalign.storage.workdir import Workdir
from actalign.sweep.dry_run import ArmWork, LLMRequestCost, SweepWork, union
from actalign.sweep.grid import Arm, Grid

Fingerprint = Callable[[VideoSpec, RunConfig], str]


def plan_sweep(grid: Grid, fingerprint: Fingerprint) -> tuple[list[ArmWork], SweepWork]:
    """Each arm's work and the sweep's union, from the store as it is now; sends and computes nothing.
    ``fingerprint(video, config)``: a video's source fingerprint, as a run keys it (``tasks.acquire``)."""
    workdir = Workdir.open(grid.arms[0].config.workdir)
    arms = [_arm_work(workdir, arm, fingerprint) for arm in grid.arms]
    return arms, union(arms)


def _arm_work(workdir: Workdir, arm: Arm, fingerprint: Fingerprint) -> ArmWork:
    config = arm.config
    inputs = load_inputs(config)
    model = fetch_identity(config)
    assignments = [assign_scripts(inputs.classes, inputs.videos, config, kind) for kind in config.text_kinds()]
    plan = plan_run(workdir, config, inputs, model, lambda video: fingerprint(video, config), assignments)
    items: dict[str, dict[str, bool]] = {}
    for item in plan.items:
        if item.state != ERROR and item.key:
            items.setdefault(item.stage, {})[item.key] = item.state == STALE
    videos = {v.video_id: v for v in inputs.videos}
    frames = {item.key: _frames(videos[item.item], config) for item in plan.items if item.stage == "acquire" and item.state == STALE}
    return ArmWork(arm.name, items, frames, _llm_requests(workdir, config, inputs))


def _frames(video: Any, config: RunConfig) -> int:
    """Frames sampled from a local video at the arm's fps (a remote one is not probed: 0)."""
    source = Path(str(video.source))
    if not source.is_file():
        return 0
    start = video.start_s or 0.0
    end = video.end_s if video.end_s is not None else video_duration(source)
    return max(0, int((end - start) * config.fps + 1e-9))


def _llm_requests(workdir: Workdir, config: RunConfig, inputs: Any) -> dict[str, LLMRequestCost]:
    if config.provider != "openai":
        return {}
    out = {}
    for kind in config.text_kinds():
        provider = llm_provider(config, kind)
        groups = llm_groups(inputs.classes, inputs.videos, config, kind)
        plan = plan_requests(provider, groups, have_key=lambda key: workdir.script_path(key).exists())
        price = (0.0, 0.0) if provider.settings.is_local() else price_of(provider.settings.model)
        for request in plan.pending:
            prompt, completion = estimate_tokens(provider, request)
            cost = None if price is None else (prompt * price[0] + completion * price[1]) / 1e6
            out[request.key] = LLMRequestCost(prompt, completion, cost)
    return out
