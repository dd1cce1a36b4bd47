"""One configuration model for a run: the CLI, the flows and the run record all use it.

Validated before any work starts; stored in full in the ``runs`` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from actalign.calibration import CHOICES as CALIBRATIONS
from actalign.download import DownloadOptions
from actalign.frames import DEFAULT_FPS
from actalign.llm import LLMSettings
from actalign.llm.prompts import DEFAULT_TEMPLATE
from actalign.registry import DEFAULT_MODEL
from actalign.scorers import DEFAULT_SCORERS, SCORERS, texts_needed
from actalign.suggest import closest

DEFAULT_WORKDIR = Path("actalign-data")
# Videos per shard (one acquire and one score task) when the run does not say: about SHARDS_PER_WORKER shards
# per worker, so a slow shard does not leave the others idle at the end, within SHARD_SIZES. Each task run costs
# the Prefect server about 17 ms of CPU on the machine's cores (1,000 small videos: 2.3 s in shards of 16,
# 0.7 s in shards of 64). On a Dask cluster the concurrency is not known here: the smallest size, many shards.
SHARD_SIZES = (16, 64)
SHARDS_PER_WORKER = 4
# A Dask scheduler address: scheme://host:port (IPv6 in brackets) for the network transports, or inproc://anything.
_DASK_ADDRESS = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss)://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}|inproc://\S+)")


class DownloadSettings(BaseModel):
    """How remote videos are fetched. Cookies and proxy are excluded from every dump of the
    configuration, so they never reach run records, reports or Prefect parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_height: int = Field(720, ge=144, description="resolution cap (single-file formats only, no merge)")
    margin_s: float = Field(2.0, ge=0, description="extra seconds fetched around a segment")
    cookies: Path | None = Field(None, exclude=True, description="cookies.txt for yt-dlp (never logged or stored)")
    proxy: SecretStr | None = Field(None, exclude=True, description="proxy URL for yt-dlp (never logged or stored)")
    rate_limit: int | None = Field(None, ge=1, description="bytes per second per download")
    concurrency: int = Field(4, ge=1, description="downloads at once per shard")
    max_attempts: int = Field(4, ge=1, description="attempts for transient failures (backoff with jitter)")
    backoff_s: float = Field(1.0, ge=0, description="first wait between attempts, seconds")
    retry_failed: bool = Field(False, description="try again the downloads an earlier run found permanently unavailable")

    def options(self) -> DownloadOptions:
        return DownloadOptions(
            max_height=self.max_height,
            margin_s=self.margin_s,
            cookiefile=str(self.cookies) if self.cookies else None,
            proxy=self.proxy.get_secret_value() if self.proxy else None,
            rate_limit=self.rate_limit,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
        )


class Prompts(BaseModel):
    """The prompt template of each kind of class text an LLM writes: a shipped name or a .yaml path.
    One field per kind of ``actalign.classes.TEXT_KINDS``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: str = Field(DEFAULT_TEMPLATE, description="the ordered sub-action script: context-rich, short-fixed, or a .yaml path")
    attributes: str = Field("attributes", description="attribute keywords (attribute-saliency)")
    subtexts: str = Field("storyboard", description="storyboard sub-texts (storyboard)")


RENAMED = {"attribute_prompt": "prompts.attributes", "subtext_prompt": "prompts.subtexts"}


class RunConfig(BaseModel):
    """Everything a pipeline run depends on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    videos: Path | None = Field(None, description="folder of videos, or a CSV/JSONL/Parquet manifest (with a benchmark: its local copy)")
    classes: Path | None = Field(None, description="YAML/JSON file of candidate classes and their steps (optional with a benchmark)")
    benchmark: Literal["actionatlas"] | None = Field(None, description="read the videos and classes of a benchmark instead of a manifest")
    workdir: Path = Field(DEFAULT_WORKDIR, description="folder holding the stores, runs and the DuckDB file")
    model: str = Field(DEFAULT_MODEL, description="registry name, Hugging Face id or local folder")
    revision: str | None = Field(None, min_length=1, description="branch, tag or commit of a Hugging Face hub model (part of the model's key)")
    calibration: str | None = Field(None, description="how cosines become affinities: sigmoid, midpoint or cosine (default: the model family's; part of the pair keys)")
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
    prompts: Prompts = Field(default_factory=Prompts, description="the prompt template of each kind of text the LLM writes")
    limit: int | None = Field(None, ge=1, description="only the first N videos of the manifest (after filtering): a smoke test")
    shard_size: int | None = Field(None, ge=1, description="videos per task; unset: about 4 shards per worker, 16 to 64 videos each (16 on Dask)")
    workers: int = Field(2, ge=1, description="tasks running at once in this process (local runner)")
    dask_address: str | None = Field(None, description="run the tasks on this existing Dask scheduler, e.g. tcp://host:8786")
    download: DownloadSettings = Field(default_factory=DownloadSettings, description="fetching remote videos")

    def videos_per_shard(self, n_videos: int) -> int:
        """``shard_size``, or when unset the size that makes about ``SHARDS_PER_WORKER`` shards per worker."""
        if self.shard_size is not None:
            return self.shard_size
        smallest, largest = SHARD_SIZES
        if self.dask_address:
            return smallest
        return min(largest, max(smallest, -(-n_videos // (SHARDS_PER_WORKER * self.workers))))

    def text_kinds(self) -> tuple[str, ...]:
        """The kinds of class text the run's scorers need: always the steps (and the class name)."""
        return ("steps", *sorted(texts_needed(self.scorers)))

    def prompt_for(self, kind: str) -> str:
        return getattr(self.prompts, kind)

    @model_validator(mode="before")
    @classmethod
    def _renamed_fields(cls, data: Any) -> Any:
        """Configurations written before the prompts were gathered in one field: say where each moved."""
        if isinstance(data, dict):
            moved = [f"{old} -> {new}" for old, new in RENAMED.items() if old in data]
            if isinstance(data.get("llm"), dict) and "prompt" in data["llm"]:
                moved.append("llm.prompt -> prompts.steps")
            if moved:
                raise ValueError(f"renamed field(s): {'; '.join(moved)} (e.g. prompts: {{steps: context-rich, attributes: attributes}})")
        return data

    @model_validator(mode="after")
    def _inputs_given(self) -> RunConfig:
        if self.benchmark is None and (self.videos is None or self.classes is None):
            raise ValueError("give --videos and --classes (or --benchmark actionatlas)")
        return self

    @field_validator("scorers")
    @classmethod
    def _known_scorers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "all" in value:
            return tuple(SCORERS)
        unknown = [name for name in value if name not in SCORERS]
        if unknown:
            raise ValueError(f"unknown scorer(s) {', '.join(map(repr, unknown))}{closest(unknown, SCORERS)}; choose from {', '.join(SCORERS)}")
        return tuple(dict.fromkeys(value))

    @field_validator("calibration")
    @classmethod
    def _known_calibration(cls, value: str | None) -> str | None:
        if value is not None and value not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {value!r}{closest([value], CALIBRATIONS)}; choose from {', '.join(CALIBRATIONS)}")
        return value

    @field_validator("workdir")
    @classmethod
    def _workdir_duckdb_can_use(cls, value: Path) -> Path:
        """DuckDB's globs find no file under a folder whose name has a backslash, and it names the WAL of
        a database under ``a?b/`` ``a.wal?b/...``, so it cannot write one there (``[`` and ``*`` are fine)."""
        bad = " or ".join(f"'{c}'" for c in sorted(set("\\?") & set(str(value.expanduser().resolve()))))
        if bad:
            raise ValueError(f"workdir {value}: DuckDB cannot work under a path with {bad}; choose another folder")
        return value

    @field_validator("dask_address")
    @classmethod
    def _dask_address(cls, value: str | None) -> str | None:
        """Refuse a typo here, before any work, rather than as a connect timeout after the planning."""
        if value is None:
            return None
        address = value.strip()
        if "://" not in address:
            address = f"tcp://{address}"  # Dask's own default transport for host:port
        port = address.rsplit(":", 1)[-1]
        if not _DASK_ADDRESS.fullmatch(address) or (not address.startswith("inproc://") and not 0 < int(port) < 65536):
            raise ValueError(f"{value!r} is not a Dask scheduler address; expected e.g. tcp://host:8786, tls://host:8786 or inproc://...")
        return address

    @field_validator("step_template", "name_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            value.format(step="s", action="a", domain="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template {value!r} may use only {{step}}, {{action}} and {{domain}}: {exc}") from exc
        return value


def make_config(settings: dict[str, Any], labels: Mapping[str, str] | None = None) -> RunConfig:
    """A validated RunConfig, or one ValueError listing every bad field, not pydantic's traceback.

    ``labels`` maps a dotted field (``llm.model``) to the name the user wrote (``--llm-model``); a field
    without one is named as in a config file (``fps``).
    """
    try:
        return RunConfig(**settings)
    except ValidationError as exc:
        problems = "; ".join(_problem(error, labels or {}) for error in exc.errors())
        raise ValueError(f"invalid options: {problems}") from None


def _problem(error: Any, labels: Mapping[str, str]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    field = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))  # drop a tuple's item index
    if not field:
        return message
    if error["type"] == "extra_forbidden":
        return f"{field}: {message}{closest([field], RunConfig.model_fields) if len(error['loc']) == 1 else ''}"
    given = "" if error["type"] in ("value_error", "missing") else f" (got {error['input']!r})"
    return f"{labels.get(field, field)}: {message}{given}"


PATH_FIELDS = (("videos",), ("classes",), ("workdir",), ("download", "cookies"))
TEMPLATE_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def relative_to_file(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A config file's fields with its relative paths made relative to ``folder`` (the file's own), so a
    configuration means the same from any current directory; prompt templates named by a shipped name stay names."""
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for *parents, field in PATH_FIELDS:
        target = data.get(parents[0]) if parents else data
        if isinstance(target, dict) and isinstance(target.get(field), (str, Path)):
            target[field] = _against(target[field], folder)
    if isinstance(data.get("prompts"), dict):
        for kind, template in data["prompts"].items():
            if isinstance(template, str) and template.lower().endswith(TEMPLATE_FILE_SUFFIXES):
                data["prompts"][kind] = str(_against(template, folder))
    return data


def with_absolute_paths(config: RunConfig) -> RunConfig:
    """The configuration with every path absolute: a copy written to a file means the same from any folder."""
    update = {field: getattr(config, field).absolute() for (field,) in PATH_FIELDS[:3] if getattr(config, field) is not None}
    templates = {kind: str(Path(name).absolute()) for kind, name in config.prompts.model_dump().items() if name.lower().endswith(TEMPLATE_FILE_SUFFIXES)}
    return config.model_copy(update={**update, "prompts": config.prompts.model_copy(update=templates)})


def _against(value: str | Path, folder: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def render_text(template: str, *, domain: str | None, step: str = "", action: str = "") -> str:
    """Fill a text template; with no domain, drop an " in {domain}"-style suffix instead of writing "None"."""
    if domain is None:
        template = template.replace(" in {domain}", "").replace("{domain}", "")
    return template.format(step=step, action=action, domain=domain or "").strip()
