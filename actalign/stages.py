"""What each stage's outputs depend on, declared once: its name, its version and the run settings it reads.

Every stage output is stored under its key (``actalign.keys.stage_key``): a hash of
the stage's name and version, the settings declared here and the item's own
inputs (a video, a class's texts, a script key, a frames key). The same
declaration gives the settings a freshness plan records (``storage.freshness``),
so a setting added to a stage here changes its keys and is named in the reason a
stale item gives ("fps 4.0 -> 2.0"), with no other edit. Bump a stage's version
when its logic changes, so that old outputs stop matching.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from actalign.calibration import PAPER
from actalign.classes import TEXT_KINDS, ClassSpec
from actalign.keys import stage_key
from actalign.scorers import smooths
from actalign.scripts import provider_config

if TYPE_CHECKING:
    from actalign.config import RunConfig
    from actalign.manifest import VideoSpec
    from actalign.registry import ModelIdentity


@dataclass(frozen=True)
class Setting:
    """A run setting a stage's outputs depend on, named as keys and plans name it.

    ``read`` takes its value from the run's configuration and model identity;
    None means it does not apply to this run: plans and key configurations
    leave it out. ``hashed`` says how it reaches the keys: ``config`` by name; ``input`` appended to the
    item's inputs in declaration order (the model's id and fingerprint, where
    keys have always had them); ``indirect`` through one of the item's own inputs
    (a remote video's media key, an LLM script's key), so it is recorded for the
    reasons only. ``only``: the items of these variants alone depend on it (in
    the score stage, the variant is the scorer).
    """

    name: str
    read: Callable[[RunConfig, ModelIdentity], Any]
    hashed: Literal["config", "input", "indirect"] = "config"
    only: Callable[[str], bool] | None = None

    def keys(self, variant: str | None) -> bool:
        """True when the keys of the items of ``variant`` hash this setting."""
        return self.hashed != "indirect" and (self.only is None or variant is None or self.only(variant))


@dataclass(frozen=True)
class Stage:
    """A stage's name, its version and every run setting its outputs depend on."""

    name: str
    version: int
    settings: tuple[Setting, ...]

    def values(self, config: RunConfig, model: ModelIdentity) -> dict[str, Any]:
        """The stage's version and settings in this run, as a plan records them and its reasons compare them."""
        read = {setting.name: setting.read(config, model) for setting in self.settings}
        return {"version": self.version, **{name: value for name, value in read.items() if value is not None}}

    def item_values(self, values: Mapping[str, Any], variant: str | None = None) -> dict[str, Any]:
        """Of a plan's recorded ``values``, those the keys of ``variant``'s items hash."""
        return {"version": values.get("version"), **{s.name: values.get(s.name) for s in self.settings if s.keys(variant)}}

    def key(self, config: RunConfig, model: ModelIdentity | None, item: Mapping[str, Any], inputs: Sequence[str] = (), variant: str | None = None) -> str:
        """The key of one item: ``item``, its own settings, and ``inputs``, the keys or fingerprints of what it is made from.

        ``model`` may be None for a stage whose settings read none (scripts).
        """
        hashed = [(s, s.read(config, model)) for s in self.settings if s.keys(variant)]  # type: ignore[arg-type]
        settings = {s.name: value for s, value in hashed if s.hashed == "config" and value is not None}
        return stage_key(self.name, self.version, {**item, **settings}, [*inputs, *(value for s, value in hashed if s.hashed == "input")])


def _llm_config(config: RunConfig, model: ModelIdentity | None, kind: str) -> dict | None:
    """What the LLM scripts of ``kind`` depend on; the provider hashes it into each script's key."""
    return provider_config(config, kind) if config.provider == "openai" and kind in config.text_kinds() else None


MODEL_SETTINGS = (  # the exact checkpoint and precision
    Setting("dtype", lambda config, model: model.dtype_name),
    Setting("model", lambda config, model: model.model_id, "input"),
    Setting("fingerprint", lambda config, model: model.fingerprint, "input"),
)

# Fetching, decoding, sampling, obfuscation and the image tower; the item: a video's segment and source.
# Version: bump when fetching, decoding, sampling, obfuscation or embedding logic changes (streaming: same frames, same numbers).
ACQUIRE = Stage(
    "acquire",
    2,
    (
        Setting("fps", lambda config, model: config.fps),
        Setting("image_size", lambda config, model: list(model.image_size)),
        Setting("centre_crop", lambda config, model: model.centre_crop or None),  # None (stretched): keys from before crops existed
        *MODEL_SETTINGS,
        Setting("max_height", lambda config, model: config.download.max_height, "indirect"),  # in a remote video's media key
        Setting("margin_s", lambda config, model: config.download.margin_s, "indirect"),
    ),
)

# Hand-written texts, or an LLM's; the item: a class and a kind of text. No key hashes a run setting
# directly: a hand-written script is its class's texts, and an LLM script's key (made by the provider,
# with this version) hashes the provider's settings (``OpenAIScriptProvider.config``), recorded per kind.
# Version: bump when storing texts, or parsing and validating an LLM's answer, changes what a stored script can be.
SCRIPTS = Stage(
    "scripts",
    1,
    (
        Setting("provider", lambda config, model: config.provider, "indirect"),  # which classes go to the LLM
        *(Setting(kind, partial(_llm_config, kind=kind), "indirect") for kind in TEXT_KINDS),
    ),
)

# The text tower over a stored script; the item: a script key.
TEXTS = Stage(
    "step_embeddings",
    1,
    (
        Setting("step_template", lambda config, model: config.step_template),
        Setting("name_template", lambda config, model: config.name_template),
        *MODEL_SETTINGS,
    ),
)

# One scorer on one (video, candidate) pair; the item: the scorer, the frames key and the candidate's embedding keys.
# Version: bump when any scorer's logic changes.
SCORE = Stage(
    "score",
    1,
    (
        Setting("scorers", lambda config, model: list(config.scorers), "indirect"),  # each pair's key hashes its own scorer
        Setting("smoothing", lambda config, model: config.smoothing, only=smooths),
        Setting("logit_scale", lambda config, model: model.logit_scale),  # the affinity's, as the calibration makes it
        Setting("logit_bias", lambda config, model: model.logit_bias),
        # None for the paper's, so results keyed before calibrations existed keep their keys.
        Setting("calibration", lambda config, model: None if model.calibration == PAPER else model.calibration),
    ),
)


def run_settings(config: RunConfig, model: ModelIdentity) -> dict[str, dict[str, Any]]:
    """Per stage, in run order, its version and settings in this run (what a plan records)."""
    return {stage.name: stage.values(config, model) for stage in (ACQUIRE, SCRIPTS, TEXTS, SCORE)}


def frames_key(video: VideoSpec, source: str, config: RunConfig, model: ModelIdentity) -> str:
    """A video's frame embeddings: its segment and ``source`` (its content or its download's media key), sampled and embedded."""
    item = {"video_id": video.video_id, "start_s": video.start_s, "end_s": video.end_s, "obfuscation": video.obfuscation}
    return ACQUIRE.key(config, model, item, [source])


def hand_written_key(spec: ClassSpec, kind: str, config: RunConfig) -> str:
    """A class's hand-written texts of one kind."""
    item = {"class_id": spec.class_id, "domain": spec.domain, "action": spec.action, kind: spec.texts(kind), "provider": "file"}
    return SCRIPTS.key(config, None, item)


def embed_key(script_key: str, config: RunConfig, model: ModelIdentity) -> str:
    """A stored script's texts, embedded."""
    return TEXTS.key(config, model, {}, [script_key])


def pair_key(scorer: str, config: RunConfig, model: ModelIdentity, frames_key: str, keys: Mapping[str, str]) -> str:
    """One scorer's score of one video against one candidate; ``keys``: the candidate's embedding key per kind of text."""
    return SCORE.key(config, model, {"scorer": scorer}, [frames_key, *(f"{kind}={key}" for kind, key in sorted(keys.items()))], variant=scorer)
