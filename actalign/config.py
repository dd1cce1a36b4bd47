"""One configuration model for a run: the CLI, the flows and the run record all use it.

Validated before any work starts; stored in full in the ``runs`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from actalign.frames import DEFAULT_FPS
from actalign.llm import LLMSettings
from actalign.models import DEFAULT_MODEL
from actalign.scorers import DEFAULT_SCORERS, SCORER_NAMES

DEFAULT_WORKDIR = Path("actalign-data")
DEFAULT_SHARD_SIZE = 16  # videos per task: coarse enough that Prefect's per-task cost is noise


class RunConfig(BaseModel):
    """Everything a pipeline run depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    videos: Path = Field(description="folder of videos, or a CSV/JSONL/Parquet manifest")
    classes: Path = Field(description="YAML/JSON file of candidate classes and their steps")
    workdir: Path = Field(DEFAULT_WORKDIR, description="folder holding the stores, runs and the DuckDB file")
    model: str = Field(DEFAULT_MODEL, description="registry name, Hugging Face id or local folder")
    device: str = Field("auto", description="auto, cpu or cuda")
    batch_size: int | None = Field(None, ge=1, description="images/texts per forward pass; default per device")
    bf16: bool = Field(False, description="bfloat16 autocast for the towers")
    fps: float = Field(DEFAULT_FPS, gt=0, le=60, description="frames sampled per second of video")
    smoothing: int = Field(0, ge=0, description="moving-average width over frames for actalign (0/1: none)")
    scorers: tuple[str, ...] = Field(DEFAULT_SCORERS, min_length=1, description="scorers to run")
    provider: Literal["file", "openai"] = Field("file", description="where scripts come from: file (hand-written) or openai (an LLM)")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="the LLM provider's settings (provider openai)")
    step_template: str = Field("{step} in {domain}", description="text encoded for a step (domain known)")
    name_template: str = Field("{action}", description="text encoded for a class name (mean-pool baseline)")
    shard_size: int = Field(DEFAULT_SHARD_SIZE, ge=1, description="videos per task")
    workers: int = Field(2, ge=1, description="tasks running at once in this process")

    @field_validator("scorers")
    @classmethod
    def _known_scorers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in SCORER_NAMES]
        if unknown:
            raise ValueError(f"unknown scorer(s) {unknown}; choose from {list(SCORER_NAMES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("step_template", "name_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            value.format(step="s", action="a", domain="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template {value!r} may use only {{step}}, {{action}} and {{domain}}: {exc}") from exc
        return value


def render_text(template: str, *, domain: str | None, step: str = "", action: str = "") -> str:
    """Fill a text template; with no domain, drop an " in {domain}"-style suffix instead of writing "None"."""
    if domain is None:
        template = template.replace(" in {domain}", "").replace("{domain}", "")
    return template.format(step=step, action=action, domain=domain or "").strip()
