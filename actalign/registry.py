"""Which model a name means, and its identity, read from its files without torch.

A model's identity (``ModelIdentity``: id, revision, fingerprint, calibration,
input size, whether it is trained) is part of every cache key. It is read
from the model's folder (config, preprocessor config, the safetensors header)
so that ``actalign status`` plans a run without building, downloading or
loading the model; ``actalign.models`` loads the weights for real work
(``encoder_for``, which imports torch on its first call).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from actalign.builtin_models import BUILTIN
from actalign.caveats import BANNERS, UNTRAINED_MARKER, banner
from actalign.errors import InputError, ModelNotFoundError
from actalign.suggest import closest

if TYPE_CHECKING:
    from actalign.config import RunConfig
    from actalign.models import Encoder


@dataclass(frozen=True)
class ModelSpec:
    """A short name users can type instead of a hub id."""

    name: str
    source: str  # Hugging Face hub id, or "builtin:<name>" for a model built here (actalign.builtin_models)
    trained: bool
    description: str


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "siglip-so400m",
            "google/siglip-so400m-patch14-384",
            True,
            "SigLIP SO400M at 384 px, the model of the ActAlign paper (best accuracy, slow on CPU).",
        ),
        ModelSpec(
            "siglip-base",
            "google/siglip-base-patch16-224",
            True,
            "SigLIP base at 224 px: about 4x faster, lower accuracy.",
        ),
        ModelSpec(
            "toy-shapes",
            "builtin:toy-shapes",
            True,
            "A small SigLIP trained here (2 to 3 minutes, once) on generated shapes: the offline demo's model; knows no real video.",
        ),
        ModelSpec(
            "tiny-random",
            "builtin:tiny-random",
            False,
            "A tiny untrained SigLIP built locally for offline smoke tests; its numbers are meaningless.",
        ),
        ModelSpec(
            "base-random",
            "builtin:base-random",
            False,
            "An untrained SigLIP of base size built locally, for speed measurements offline; numbers are meaningless.",
        ),
    )
}
DEFAULT_MODEL = "siglip-so400m"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_TRUE = {"1", "true", "yes", "on"}
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}  # BF16 is read as the top half of a float32


class ModelNotLocalError(ModelNotFoundError):
    """The model is valid but not on this machine yet (not built, not in the Hugging Face cache)."""


@dataclass(frozen=True)
class ModelIdentity:
    """What results depend on about a model: part of every key of frames, texts and scores."""

    ref: str  # what the user asked for: a registry name, a hub id or a folder
    model_id: str  # registry name, hub id (with "@revision" when one is asked for) or resolved folder
    revision: str | None
    fingerprint: str
    trained: bool
    caveat: str | None  # the banner every run with this model shows, if any
    dtype_name: str  # what the towers compute in (weights stay float32; others are autocast)
    image_size: tuple[int, int]
    logit_scale: float
    logit_bias: float


@dataclass(frozen=True)
class Target:
    """Where ``from_pretrained`` finds a model, and what its results are keyed by."""

    location: str  # a folder path or a hub id
    model_id: str
    is_hub: bool
    revision: str | None
    registry_trained: bool


def resolve(ref: str, revision: str | None = None, *, build: bool = True) -> Target:
    """A registry name, folder or hub id as a ``Target``; a built-in model is built first when ``build``."""
    spec = REGISTRY.get(ref)
    if spec is not None and spec.source in BUILTIN:
        _hub_only(revision, ref)
        builtin = BUILTIN[spec.source]
        return Target(str(builtin.build() if build else builtin.folder()), spec.name, False, None, spec.trained)
    if spec is not None:
        return Target(spec.source, _with_revision(spec.source, revision), True, revision, spec.trained)
    folder = Path(ref).expanduser()
    if folder.is_dir():
        _hub_only(revision, ref)
        resolved = str(folder.resolve())
        return Target(resolved, resolved, False, None, True)
    if _HUB_ID.fullmatch(ref):
        return Target(ref, _with_revision(ref, revision), True, revision, True)
    raise ModelNotFoundError(
        f"Unknown model {ref!r}: not a registry name ({', '.join(REGISTRY)}), not an existing folder, "
        f"and not a Hugging Face id like 'google/siglip-base-patch16-224'{closest([ref], REGISTRY) or '.'}"
    )


def _hub_only(revision: str | None, ref: str) -> None:
    if revision is not None:
        raise InputError(f"--revision {revision!r} applies to Hugging Face hub models only, not to {ref!r}; drop it.")


def _with_revision(hub_id: str, revision: str | None) -> str:
    return f"{hub_id}@{revision}" if revision else hub_id


def identity_for(config: RunConfig) -> ModelIdentity:
    """The run's model identity read from its files, nothing built or loaded (``ModelNotLocalError`` if not here yet)."""
    return read_identity(config.model, "bfloat16" if config.bf16 else "float32", config.revision)


def fetch_identity(config: RunConfig) -> ModelIdentity:
    """The identity a run plans and keys with, weights never loaded for it when their files say enough.

    A built-in model not built yet is built; a hub model not in the cache has
    its files fetched (not loaded), so the flow's own process needs no GPU. Only
    a checkpoint without safetensors is loaded, on the CPU, to read its calibration;
    one that cannot be fetched is loaded too, for the error saying why.
    """
    try:
        return identity_for(config)
    except ModelNotLocalError:
        pass
    target = resolve(config.model, config.revision, build=True)
    if target.is_hub and not offline_env():
        _fetch_files(target)
    try:
        return identity_for(config)
    except ModelNotLocalError:
        from actalign.models import load_encoder

        return load_encoder(config.model, device="cpu", batch_size=1, bf16=config.bf16, revision=config.revision).identity


def _fetch_files(target: Target) -> None:
    """Download what ``from_pretrained`` reads (configs, tokenizer, safetensors weights) into the hub cache."""
    import huggingface_hub

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        huggingface_hub.snapshot_download(target.location, revision=target.revision, allow_patterns=patterns)
    except Exception:  # unreachable hub, unknown id: loading names the cause
        return


def check_same_model(planned: ModelIdentity, loaded: ModelIdentity) -> None:
    """Refuse to encode with a model other than the one the run keyed its outputs by (files replaced mid-run)."""
    if planned != loaded:
        raise ModelNotFoundError(
            f"model {planned.ref!r} changed on disk since the run planned with it "
            f"(fingerprint {planned.fingerprint} -> {loaded.fingerprint}); run again to plan with the new files"
        )


def encoder_for(config: RunConfig) -> Encoder:
    """The run's encoder, loaded by ``actalign.models`` (cached per process, so every task in a process shares one model)."""
    from actalign.models import load_encoder

    _limit_torch_threads()
    return load_encoder(config.model, device=config.device, batch_size=config.batch_size, bf16=config.bf16, revision=config.revision)


TORCH_THREADS_ENV = "ACTALIGN_TORCH_THREADS"


def torch_threads() -> int | None:
    """Intra-op threads torch should use in this process; None: leave torch's default.

    ``$ACTALIGN_TORCH_THREADS`` wins. Inside a Dask worker it is the worker's
    ``--nthreads``, the cores it claims: the encoder runs one batch at a time per
    process, so N worker processes on a machine use N x nthreads cores and never
    oversubscribe it (Dask's nanny sets OMP_NUM_THREADS=1, which would leave a
    single worker on a big machine with one core). Elsewhere: torch's default (all cores).
    """
    if value := os.environ.get(TORCH_THREADS_ENV, "").strip():
        if not value.isdigit() or int(value) < 1:
            raise InputError(f"{TORCH_THREADS_ENV}={value!r}: give a whole number of threads, at least 1")
        return int(value)
    if "distributed" in sys.modules:  # only a process that imported distributed can be a Dask worker
        from distributed import get_worker

        try:
            return max(1, get_worker().state.nthreads)
        except ValueError:  # not inside a Dask worker
            return None
    return None


@functools.cache
def _limit_torch_threads() -> None:
    """Once per process, before the first model load."""
    if (threads := torch_threads()) is not None:
        import torch

        torch.set_num_threads(threads)


def read_identity(ref: str, dtype_name: str = "float32", revision: str | None = None) -> ModelIdentity:
    """The identity of a model already on this machine, from its files: nothing is built, downloaded or loaded.

    Raises ``ModelNotLocalError`` when the model would first have to be built or
    downloaded, and ``ModelNotFoundError`` when its files do not describe a SigLIP.
    """
    target = resolve(ref, revision, build=False)
    folder = local_folder(target)
    calibration = read_calibration(folder)
    if calibration is None:
        raise ModelNotLocalError(f"{ref!r}: its weights are not in safetensors format, so its calibration is known only by loading it.")
    return identity_of(ref, target, folder, dtype_name, calibration)


def local_folder(target: Target) -> Path:
    """The folder holding the target's files; ``ModelNotLocalError`` if they are not here yet."""
    if target.is_hub:
        import huggingface_hub

        config_path = huggingface_hub.try_to_load_from_cache(target.location, "config.json", revision=target.revision)
        if not isinstance(config_path, str):
            raise ModelNotLocalError(f"{target.model_id!r} is not in the local Hugging Face cache yet: a run downloads it.")
        return Path(config_path).parent
    folder = Path(target.location)
    if not (folder / "config.json").is_file():
        raise ModelNotLocalError(f"{target.model_id!r} is not built on this machine yet ({folder}): a run builds it.")
    return folder


def identity_of(ref: str, target: Target, folder: Path, dtype_name: str, calibration: tuple[float, float]) -> ModelIdentity:
    """The identity of the model in ``folder``; ``calibration`` is (logit_scale, logit_bias)."""
    trained = target.registry_trained and not (folder / UNTRAINED_MARKER).exists()
    return ModelIdentity(
        ref=ref,
        model_id=target.model_id,
        revision=target.revision,
        fingerprint=fingerprint(folder),
        trained=trained,
        caveat=model_caveat(folder, trained),
        dtype_name=dtype_name,
        image_size=image_size(folder, ref),
        logit_scale=calibration[0],
        logit_bias=calibration[1],
    )


def fingerprint(folder: Path) -> str:
    """Same files -> same hash, without reading gigabytes of weights."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.iterdir()):
        if path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"\0{path.name}\0{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def image_size(folder: Path, ref: str) -> tuple[int, int]:
    """(height, width) the image processor resizes to; a SigLIP has a fixed one.

    The image processor's settings are in preprocessor_config.json, or (as transformers 5
    saves them) under "image_processor" in processor_config.json.
    """
    settings = _json(folder / "preprocessor_config.json") or _json(folder / "processor_config.json").get("image_processor") or {}
    size = settings.get("size") if isinstance(settings, dict) else None
    if not isinstance(size, dict) or size.get("height") is None or size.get("width") is None:
        raise ModelNotFoundError(f"{ref!r}: its image processor settings name no fixed height/width; not a SigLIP folder.")
    return int(size["height"]), int(size["width"])


def _json(path: Path) -> dict:
    """A JSON object from ``path``; empty when the file is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_calibration(folder: Path) -> tuple[float, float] | None:
    """(logit_scale, logit_bias) from the safetensors header and data, without torch; None for other weight formats."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = {name: folder / weight_map[name] for name in ("logit_scale", "logit_bias") if name in weight_map}
    elif (folder / "model.safetensors").is_file():
        files = dict.fromkeys(("logit_scale", "logit_bias"), folder / "model.safetensors")
    else:
        return None
    if len(files) != 2:
        return None
    return _safetensors_scalar(files["logit_scale"], "logit_scale"), _safetensors_scalar(files["logit_bias"], "logit_bias")


def _safetensors_scalar(path: Path, name: str) -> float:
    """One single-element tensor of a safetensors file (8-byte header length, JSON header, then the data)."""
    with path.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        entry = json.loads(handle.read(header_length))[name]
        begin, end = entry["data_offsets"]
        handle.seek(8 + header_length + begin)
        raw = handle.read(end - begin)
    if entry["dtype"] == "BF16":
        return float((np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)[0])
    return float(np.frombuffer(raw, _SAFETENSORS_DTYPES[entry["dtype"]])[0])


def model_caveat(folder: Path, trained: bool) -> str | None:
    """The banner for runs with the model in ``folder``: what its marker file says, else the untrained one if untrained."""
    marked = [text for marker, text in BANNERS.items() if (folder / marker).is_file()]
    return banner(trained, marked[0] if marked else None)


def built_here(model: str) -> bool:
    """True for a registry model built on this machine (no hub needed)."""
    spec = REGISTRY.get(model)
    return spec is not None and spec.source in BUILTIN


def offline_env() -> bool:
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """True if the hub answers within ``timeout_s``; never hangs (DNS included), never raises."""
    if offline_env():
        return False
    answered: list[bool] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(hub_endpoint(), method="HEAD"), timeout=timeout_s):
                answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # an HTTP error status is still an answer
        except (OSError, ValueError):
            answered.append(False)

    # A thread, because urlopen's timeout does not cover a hanging DNS lookup.
    thread = threading.Thread(target=probe, daemon=True, name="actalign-hub-probe")
    thread.start()
    thread.join(timeout_s)
    return bool(answered and answered[0])
