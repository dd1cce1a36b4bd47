"""A sweep's grid file: a base configuration (as `actalign config` writes it) and axes over its fields.

    base: {videos: v.csv, classes: c.yaml, model: tiny-random}   # or a path to a config file
    axes:                          # dotted RunConfig fields -> the values to try
      prompts.steps: [context-rich, short-fixed]
      smoothing: [0, 3]
      scorers: [actalign, mean-pool]   # a scorer, or a list of scorers, per arm
    exclude: [{smoothing: 3, scorers: mean-pool}]   # drop the combinations matching all these fields
    arms: [{name: paper, smoothing: 5}]             # extra arms: fields over the base
    select_on: {fraction: 0.5}     # or {domains: [kitchen]}: the videos arms are ranked on
    baseline: <arm name>           # paired differences against it (default: the first arm)
    scorer: actalign               # the scorer an arm is judged by, when it runs several

The product of the axes (minus ``exclude``, plus ``arms``) is the set of arms; each is a full RunConfig.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, get_args

from pydantic import BaseModel

from actalign.config import RunConfig, make_config, relative_to_file, with_absolute_paths
from actalign.errors import InputError
from actalign.structured_files import read_structured_file

GRID_KEYS = ("name", "base", "axes", "exclude", "arms", "select_on", "baseline", "scorer")
# One workdir per sweep (its store is what the arms share); secrets never belong in a grid.
NOT_AXES = ("workdir", "download.cookies", "download.proxy", "llm.api_key_env")
DEFAULT_FRACTION = 0.5


@dataclass(frozen=True)
class Arm:
    name: str
    settings: dict[str, Any]  # dotted field -> value: what this arm sets over the base
    config: RunConfig


@dataclass(frozen=True)
class Selection:
    """Which videos arms are ranked on: a fraction by a hash of the video id, or named domains."""

    fraction: float | None = DEFAULT_FRACTION
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Grid:
    path: Path
    name: str
    arms: tuple[Arm, ...]
    varied: tuple[str, ...]  # the dotted fields some arm sets
    selection: Selection
    baseline: str
    scorer: str | None

    @property
    def sweep_id(self) -> str:
        """From the grid's content (arms and judging), not the file: the same grid resumes the same sweep."""
        payload = {
            "arms": [[arm.name, with_absolute_paths(arm.config).model_dump(mode="json")] for arm in self.arms],
            "selection": [self.selection.fraction, list(self.selection.domains)],
            "baseline": self.baseline,
            "scorer": self.scorer,
        }
        return "sw-" + hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def arm(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)


def read_grid(path: Path) -> Grid:
    """Parse and validate a grid file; every problem is an InputError naming the file and the field."""
    data = read_structured_file(path, "grid")
    fail = _failer(path)
    if not isinstance(data, dict):
        fail("", "must be a mapping with base and axes (see docs/sweeps.md)")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        fail(unknown[0], f"unknown key; a grid has {', '.join(GRID_KEYS)}")
    base = _base(data.get("base"), path, fail)
    axes = data.get("axes") or {}
    if not isinstance(axes, dict):
        fail("axes", "must map dotted config fields to lists of values")
    for field, values in axes.items():
        _check_field(str(field), fail)
        if not isinstance(values, list) or not values:
            fail(f"axes.{field}", "must be a non-empty list of values")
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    excludes = _mappings(data.get("exclude"), "exclude", fail)
    for number, rule in enumerate(excludes):
        for field in rule:
            if field not in axes:
                fail(f"exclude[{number}].{field}", f"is not an axis; exclude names axes ({', '.join(map(str, axes)) or 'none'})")
    combos = [combo for combo in combos if not any(_matches(combo, rule) for rule in excludes)]
    named: list[tuple[str | None, dict[str, Any]]] = [(None, combo) for combo in combos]
    for number, extra in enumerate(_mappings(data.get("arms"), "arms", fail)):
        extra = dict(extra)
        name = extra.pop("name", None)
        for field in extra:
            _check_field(str(field), fail, where=f"arms[{number}].")
        named.append((None if name is None else str(name), extra))
    if not named:
        fail("axes", "gives no arm (every combination excluded and no arms: listed)")
    arms = tuple(_arm(name, settings, base, fail) for name, settings in named)
    seen: dict[str, Arm] = {}
    for arm in arms:
        if arm.name in seen:
            fail("arms", f"two arms are both {arm.name!r}; give the listed one another name")
        seen[arm.name] = arm
    baseline = str(data.get("baseline") or arms[0].name)
    if baseline not in seen:
        fail("baseline", f"no arm is named {baseline!r}; arms: {', '.join(seen)}")
    scorer = data.get("scorer")
    if scorer is not None and not any(scorer in arm.config.scorers for arm in arms):
        fail("scorer", f"{scorer!r} is run by no arm")
    varied = tuple(dict.fromkeys(field for _, settings in named for field in settings))
    return Grid(path, str(data.get("name") or path.stem), arms, varied, _selection(data.get("select_on"), fail), baseline, scorer)


def _failer(path: Path) -> Any:
    def fail(field: str, problem: str) -> NoReturn:
        raise InputError(f"grid {path}: {field + ': ' if field else ''}{problem}")

    return fail


def _base(base: Any, path: Path, fail: Any) -> dict[str, Any]:
    """The base configuration's fields; relative paths are relative to the file that names them."""
    if base is None:
        fail("base", "missing: the configuration every arm starts from (as `actalign config` prints it, or its file)")
    if isinstance(base, str):
        file = Path(base).expanduser()
        file = file if file.is_absolute() else path.parent / file
        data = read_structured_file(file, "base configuration")
        if not isinstance(data, dict):
            fail("base", f"{file} must be a mapping of RunConfig fields")
        return relative_to_file(data.get("config", data) if set(data) == {"config"} else data, file.parent)
    if not isinstance(base, dict):
        fail("base", "must be a mapping of RunConfig fields or the path of a config file")
    return relative_to_file(base, path.parent)


def _check_field(field: str, fail: Any, where: str = "axes.") -> None:
    """A dotted field must name a RunConfig field (nested through its sub-models), and not one a sweep shares."""
    if field in NOT_AXES:
        fail(where + field, "cannot vary within a sweep (one workdir holds the shared store; secrets stay out of grids)")
    model: Any = RunConfig
    for part in field.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            fail(where + field, "is not a configuration field (see `actalign config` for the fields)")
        model = _model_of(model.model_fields[part].annotation)


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside ``X | None``, else the annotation."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return annotation


def _mappings(value: Any, key: str, fail: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        fail(key, "must be a list of mappings of dotted fields to values")
    return value


def _matches(combo: Mapping[str, Any], rule: Mapping[str, Any]) -> bool:
    return all(field in combo and _normal(field, combo[field]) == _normal(field, value) for field, value in rule.items())


def _normal(field: str, value: Any) -> Any:
    """A lone scorer means a list of one."""
    return [value] if field == "scorers" and isinstance(value, str) else value


def _arm(name: str | None, settings: dict[str, Any], base: dict[str, Any], fail: Any) -> Arm:
    merged = json.loads(json.dumps(base, default=str))
    for field, value in settings.items():
        *parents, leaf = str(field).split(".")
        target = merged
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                fail(field, f"the base sets {parent} to a value that is not a mapping")
        target[leaf] = _normal(str(field), value)
    label = name or ", ".join(f"{field}={describe_value(value)}" for field, value in settings.items()) or "base"
    try:
        config = make_config(merged)
    except ValueError as exc:
        fail(f"arm {label!r}", str(exc))
    return Arm(label, {str(k): _normal(str(k), v) for k, v in settings.items()}, config)


def describe_value(value: Any) -> str:
    """A setting's value as one short string (lists joined with '+'), for arm names and the sweeps view."""
    if isinstance(value, (list, tuple)):
        return "+".join(map(describe_value, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _selection(value: Any, fail: Any) -> Selection:
    if value is None:
        return Selection()
    if not isinstance(value, dict) or set(value) - {"fraction", "domains"} or len(value) != 1:
        fail("select_on", "must be {fraction: 0.5} (a share of videos by a hash of the video id) or {domains: [a, b]}")
    if "fraction" in value:
        fraction = value["fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            fail("select_on.fraction", f"must be a number between 0 and 1 (exclusive), got {fraction!r}")
        return Selection(fraction=float(fraction))
    domains = value["domains"]
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) for d in domains):
        fail("select_on.domains", "must be a non-empty list of domain names")
    return Selection(fraction=None, domains=tuple(domains))
