"""Which model a name means, and its identity, read from its files without torch.

A model's identity (``ModelIdentity``: id, revision, fingerprint, family,
calibration, input size, whether it is trained) is part of every cache key. It is read
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

from actalign import calibration as calibrations
from actalign.builtin_models import BASE, BUILTIN, TINY
from actalign.caveats import BANNERS, UNTRAINED_MARKER, banner
from actalign.errors import InputError, ModelNotFoundError
from actalign.suggest import closest
from actalign.toy_recipe import RECIPE

if TYPE_CHECKING:
    from actalign.config import RunConfig
    from actalign.models import Encoder


@dataclass(frozen=True)
class ModelSpec:
    """A short name users can type instead of a hub id; ``family`` and ``input_size`` let ``actalign models`` list it unloaded."""

    name: str
    source: str  # Hugging Face hub id, or "builtin:<name>" for a model built here (actalign.builtin_models)
    trained: bool
    description: str
    family: str  # a key of actalign.calibration.FAMILY_DEFAULT
    input_size: int  # pixels of the square image the model sees


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "siglip-so400m",
            "google/siglip-so400m-patch14-384",
            True,
            "SigLIP SO400M at 384 px, the model of the ActAlign paper (best accuracy, slow on CPU).",
            "siglip",
            384,
        ),
        ModelSpec("siglip-base", "google/siglip-base-patch16-224", True, "SigLIP base at 224 px: about 4x faster, lower accuracy.", "siglip", 224),
        ModelSpec(
            "siglip2-so400m",
            "google/siglip2-so400m-patch14-384",
            True,
            "SigLIP 2 SO400M at 384 px (fixed resolution): SigLIP's successor, multilingual, same cost as siglip-so400m.",
            "siglip2",
            384,
        ),
        ModelSpec("siglip2-base", "google/siglip2-base-patch16-224", True, "SigLIP 2 base at 224 px (fixed resolution): the fast SigLIP 2.", "siglip2", 224),
        ModelSpec(
            "clip-vit-l-14-336",
            "openai/clip-vit-large-patch14-336",
            True,
            "OpenAI CLIP ViT-L/14 at 336 px: softmax-trained, so its affinity is calibrated (see docs/models.md).",
            "clip",
            336,
        ),
        ModelSpec("clip-vit-b-16", "openai/clip-vit-base-patch16", True, "OpenAI CLIP ViT-B/16 at 224 px: the common CLIP baseline, fast.", "clip", 224),
        ModelSpec(
            "toy-shapes",
            "builtin:toy-shapes",
            True,
            "A small SigLIP trained here (2 to 3 minutes, once) on generated shapes: the offline demo's model; knows no real video.",
            "siglip",
            RECIPE.image_size,
        ),
        ModelSpec(
            "tiny-random",
            "builtin:tiny-random",
            False,
            "A tiny untrained SigLIP built locally for offline smoke tests; its numbers are meaningless.",
            "siglip",
            TINY.image_size,
        ),
        ModelSpec(
            "tiny-clip",
            "builtin:tiny-clip",
            False,
            "A tiny untrained CLIP built locally, for offline tests of the CLIP path; its numbers are meaningless.",
            "clip",
            TINY.image_size,
        ),
        ModelSpec(
            "tiny-siglip2",
            "builtin:tiny-siglip2",
            False,
            "A tiny untrained SigLIP 2 (fixed resolution) built locally, for offline tests; its numbers are meaningless.",
            "siglip2",
            TINY.image_size,
        ),
        ModelSpec(
            "base-random",
            "builtin:base-random",
            False,
            "An untrained SigLIP of base size built locally, for speed measurements offline; numbers are meaningless.",
            "siglip",
            BASE.image_size,
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
    logit_scale: float  # the affinity's sigmoid: the checkpoint's own under calibration "sigmoid" (actalign.calibration)
    logit_bias: float
    family: str = "siglip"  # a key of actalign.calibration.FAMILY_DEFAULT
    calibration: str = calibrations.PAPER
    centre_crop: bool = False  # frames are resized to cover image_size and centre-cropped (CLIP), not stretched to it (SigLIP)


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
    return read_identity(config.model, "bfloat16" if config.bf16 else "float32", config.revision, config.calibration)


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

        options = {"revision": config.revision, "calibration": config.calibration}
        return load_encoder(config.model, device="cpu", batch_size=1, bf16=config.bf16, **options).identity


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
    options = {"revision": config.revision, "calibration": config.calibration}
    return load_encoder(config.model, device=config.device, batch_size=config.batch_size, bf16=config.bf16, **options)


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


def read_identity(ref: str, dtype_name: str = "float32", revision: str | None = None, calibration: str | None = None) -> ModelIdentity:
    """The identity of a model already on this machine, from its files: nothing is built, downloaded or loaded.

    ``calibration``: a name of ``actalign.calibration.CHOICES``; None: the family's default.
    Raises ``ModelNotLocalError`` when the model would first have to be built or
    downloaded, and ``ModelNotFoundError`` when its files do not describe a model actalign loads.
    """
    target = resolve(ref, revision, build=False)
    folder = local_folder(target)
    logits = read_calibration(folder)
    if logits is None:
        raise ModelNotLocalError(f"{ref!r}: its weights are not in safetensors format, so its calibration is known only by loading it.")
    return identity_of(ref, target, folder, dtype_name, logits, calibration)


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


def identity_of(
    ref: str, target: Target, folder: Path, dtype_name: str, logits: tuple[float, float | None], calibration: str | None = None
) -> ModelIdentity:
    """The identity of the model in ``folder``; ``logits`` is the checkpoint's (logit_scale, logit_bias or None).

    ``calibration`` (None: the family's default) turns them into the affinity's scale and bias.
    """
    trained = target.registry_trained and not (folder / UNTRAINED_MARKER).exists()
    family = model_family(folder, ref)
    chosen = calibrations.check_choice(calibration or calibrations.default_for(family), family, logits[1] is not None)
    scale, bias = calibrations.effective(chosen, family, *logits)
    return ModelIdentity(
        ref=ref,
        model_id=target.model_id,
        revision=target.revision,
        fingerprint=fingerprint(folder),
        trained=trained,
        caveat=model_caveat(folder, trained),
        dtype_name=dtype_name,
        image_size=image_size(folder, ref),
        logit_scale=scale,
        logit_bias=bias,
        family=family,
        calibration=chosen,
        centre_crop=bool(image_processor_settings(folder).get("do_center_crop")),
    )


_CLIP_TYPES = ("clip", "metaclip_2")  # softmax-trained dual encoders with CLIP's towers and processor
_SIGLIP2_TOKENIZERS = ("GemmaTokenizer", "GemmaTokenizerFast", "Siglip2Tokenizer")


def model_family(folder: Path, ref: str) -> str:
    """``siglip``, ``siglip2`` (fixed resolution: a SigLIP with Gemma's tokenizer) or ``clip``, from the folder's configs."""
    model_type = _json(folder / "config.json").get("model_type")
    if model_type in _CLIP_TYPES:
        return "clip"
    if model_type == "siglip":
        tokenizer = _json(folder / "tokenizer_config.json").get("tokenizer_class")
        return "siglip2" if tokenizer in _SIGLIP2_TOKENIZERS else "siglip"
    raise ModelNotFoundError(
        f"{ref!r} is a {model_type!r} model; actalign loads SigLIP, SigLIP 2 at fixed resolution "
        f"(model_type 'siglip') and CLIP-family dual encoders ({', '.join(_CLIP_TYPES)})."
    )


def fingerprint(folder: Path) -> str:
    """Same files -> same hash, without reading gigabytes of weights."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in sorted(folder.iterdir()):
        if path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"\0{path.name}\0{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def image_processor_settings(folder: Path) -> dict:
    """The image processor's settings: preprocessor_config.json, or (as transformers 5 saves them) processor_config.json's "image_processor"."""
    settings = _json(folder / "preprocessor_config.json") or _json(folder / "processor_config.json").get("image_processor") or {}
    return settings if isinstance(settings, dict) else {}


def image_size(folder: Path, ref: str) -> tuple[int, int]:
    """(height, width) of the image the model sees: the centre crop's where the processor crops (CLIP), else its fixed resize (SigLIP)."""
    settings = image_processor_settings(folder)
    crop = settings.get("do_center_crop")
    size = settings.get("crop_size") if crop else settings.get("size")
    if crop and isinstance(size, int):  # older CLIP configs: "crop_size": 336
        return size, size
    if not isinstance(size, dict) or size.get("height") is None or size.get("width") is None:
        raise ModelNotFoundError(f"{ref!r}: its image processor settings name no fixed height/width (or crop); not a model actalign loads.")
    return int(size["height"]), int(size["width"])


def _json(path: Path) -> dict:
    """A JSON object from ``path``; empty when the file is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_calibration(folder: Path) -> tuple[float, float | None] | None:
    """(logit_scale, logit_bias) from the safetensors header and data, without torch; the bias None for a
    softmax-trained model (CLIP), the whole None for other weight formats."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = {name: folder / weight_map[name] for name in ("logit_scale", "logit_bias") if name in weight_map}
    elif (folder / "model.safetensors").is_file():
        single = folder / "model.safetensors"
        files = {name: single for name in ("logit_scale", "logit_bias") if name in _safetensors_header(single)}
    else:
        return None
    if "logit_scale" not in files:
        return None
    bias = _safetensors_scalar(files["logit_bias"], "logit_bias") if "logit_bias" in files else None
    return _safetensors_scalar(files["logit_scale"], "logit_scale"), bias


def _safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then the header)."""
    with path.open("rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(header_length))


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
