"""What a whole sweep will compute, with the work its arms share counted once.

Each arm's freshness plan (``storage.freshness``) lists every item it needs under its key, fresh or
stale; items of several arms with one key are one piece of work. The union over arms is what the
sweep computes, since every arm reuses what an earlier one stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# stage -> what its items are, as the dry run prints them
STAGE_UNITS = {"acquire": "videos to decode and encode", "scripts": "scripts (LLM requests or hand-written)",
               "step_embeddings": "step-embedding files (texts to encode)", "score": "pairs to score"}


@dataclass(frozen=True)
class LLMRequestCost:
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model is not in the price table


@dataclass(frozen=True)
class ArmWork:
    """One arm's plan: per stage, key -> stale (True) or already stored (False)."""

    arm: str
    items: dict[str, dict[str, bool]]
    frames: dict[str, int] = field(default_factory=dict)  # frames key -> frames it samples (estimate from the duration)
    llm_requests: dict[str, LLMRequestCost] = field(default_factory=dict)  # request key -> its estimate, for requests to send


@dataclass(frozen=True)
class StageWork:
    needed: int  # distinct items the sweep needs
    stored: int  # of those, already in the store
    own: int  # the sum over arms of the items each needs: what runs in fresh workdirs would compute

    @property
    def to_compute(self) -> int:
        return self.needed - self.stored


@dataclass(frozen=True)
class SweepWork:
    stages: dict[str, StageWork]
    frames_to_decode: int
    llm_requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None

    def lines(self) -> list[str]:
        out = [f"{STAGE_UNITS.get(name, name)}: {w.to_compute} to compute, {w.stored} already stored "
               f"({w.needed} distinct; {w.own} if each arm computed its own)" for name, w in self.stages.items()]
        out.append(f"frames to decode and encode: about {self.frames_to_decode}")
        cost = "unknown (a model is not in the price table)" if self.cost_usd is None else f"about ${self.cost_usd:.2f} (estimate)"
        out.append(f"LLM requests to send: {self.llm_requests}, about {self.prompt_tokens} prompt and "
                   f"{self.completion_tokens} completion tokens; cost {cost}")
        return out


def union(arms: Sequence[ArmWork]) -> SweepWork:
    """The sweep's distinct work: an item stale in any arm is computed once (by the first arm needing it)."""
    stages: dict[str, StageWork] = {}
    for stage in dict.fromkeys(name for arm in arms for name in arm.items):
        keys: dict[str, bool] = {}
        for arm in arms:
            for key, stale in arm.items.get(stage, {}).items():
                keys[key] = keys.get(key, True) and stale
        own = sum(len(arm.items.get(stage, {})) for arm in arms)
        stages[stage] = StageWork(needed=len(keys), stored=sum(not stale for stale in keys.values()), own=own)
    frames: dict[str, int] = {}
    requests: dict[str, LLMRequestCost] = {}
    for arm in arms:
        frames.update({k: n for k, n in arm.frames.items() if arm.items.get("acquire", {}).get(k, False)})
        requests.update(arm.llm_requests)
    costs = [r.cost_usd for r in requests.values()]
    return SweepWork(
        stages=stages,
        frames_to_decode=sum(frames.values()),
        llm_requests=len(requests),
        prompt_tokens=sum(r.prompt_tokens for r in requests.values()),
        completion_tokens=sum(r.completion_tokens for r in requests.values()),
        cost_usd=None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
    )
