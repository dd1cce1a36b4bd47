"""Image-text model loading and embedding (SigLIP, SigLIP 2, CLIP family): the one place that knows about transformers.

Everything downstream works on plain float32 numpy embeddings plus the
affinity's ``logit_scale``/``logit_bias`` (``actalign.calibration``), so scorers never touch torch.
Each family keeps its own text settings: SigLIP pads to its fixed length with no
mask; SigLIP 2 also lowercases (as it was trained); CLIP pads to 77 tokens with its mask.
An ``Encoder`` carries the identity (``model_id``, ``fingerprint``) that cache
keys and result rows need, so results of different checkpoints never mix.
"""

from __future__ import annotations

import math
import platform
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

# Top level on purpose: the first `AutoModel` import from several threads at once raises ImportError.
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, BaseImageProcessor, PreTrainedTokenizerBase

from actalign.errors import InputError, ModelNotFoundError
from actalign.registry import DEFAULT_MODEL, ModelIdentity, Target, hub_endpoint, hub_reachable, identity_of, local_folder, offline_env, resolve

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "PRECISIONS",
    "Encoder",
    "PendingFeatures",
    "choose_device",
    "choose_precision",
    "clear_encoder_cache",
    "default_batch_size",
    "load_encoder",
]


# Images per forward pass at 224 px: CPU gains nothing beyond ~32; a GPU wants large batches.
DEFAULT_BATCH_SIZE = {"cpu": 32, "cuda": 128}

# What the towers compute in: float32 weights always; the others are autocast. "auto" picks per device.
PRECISIONS = ("float32", "bfloat16", "float16", "auto")
_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}



def choose_device(requested: str = "auto") -> str:
    """Resolve ``auto`` and refuse ``cuda`` up front rather than failing mid-run."""
    device = requested.strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(
                f"Device {requested!r} requested, but CUDA is not available here "
                f"(torch {torch.__version__}). Use --device cpu or --device auto."
            )
        return device
    raise InputError(f"Unknown device {requested!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.")


def _cpu_has_fast_bf16() -> bool:
    """True when oneDNN runs bfloat16 natively here (AVX512-BF16 or AMX); else bf16 on CPU is emulated and slow."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(device: str, requested: str = "float32") -> str:
    """Resolve ``auto`` to the fastest autocast dtype the device supports; refuse unknown names.

    ``auto``: cuda -> bfloat16 where the GPU supports it (Ampere and later), else
    float16; cpu -> bfloat16 where oneDNN has native bf16 (AVX512-BF16/AMX: about
    2x faster than float32 for SigLIP base), else float32.
    """
    name = requested.strip().lower()
    if name not in PRECISIONS:
        raise InputError(f"Unknown precision {requested!r}: use one of {', '.join(PRECISIONS)}.")
    kind = device.split(":")[0]
    if name == "auto":
        if kind == "cuda":
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "bfloat16" if _cpu_has_fast_bf16() else "float32"
    return name


def default_batch_size(device: str, image_size: tuple[int, int] = (224, 224)) -> int:
    """Images per forward pass when the caller gives none.

    CPU: 32 whatever the model (throughput is flat beyond it, and latency per
    batch stays a few seconds). GPU: 128 at 224 px, scaled by the pixel count for
    larger inputs (so400m at 384 px: 32), a power of two, at least 16.
    """
    kind = device.split(":")[0]
    base = DEFAULT_BATCH_SIZE[kind]
    if kind == "cpu":
        return base
    scaled = base * (224 * 224) / (image_size[0] * image_size[1])
    return int(max(16, min(base, 2 ** round(math.log2(scaled)))))


class PendingFeatures:
    """Image features being computed: ``result()`` waits (on cuda) and returns float32 (N, embed_dim).

    On the CPU the work is already done when this is made. On cuda the features
    are copied into pinned host memory without blocking, and an event marks
    when the copy (and so the batch's host input buffer's upload) is complete.
    """

    def __init__(self, features: torch.Tensor, event: torch.cuda.Event | None = None) -> None:
        self._features = features
        self._event = event

    def done(self) -> bool:
        return self._event is None or self._event.query()

    def result(self) -> np.ndarray:
        if self._event is not None:
            self._event.synchronize()
        return self._features.numpy()


class Encoder:
    """A loaded image-text model with batched, inference-only image and text towers.

    Thread-safe: one lock serialises forward passes, so several tasks sharing
    the process's encoder take turns instead of oversubscribing the cores.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: BaseImageProcessor,
        *,
        identity: ModelIdentity,
        device: str,
        batch_size: int | None = None,
        compile: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.identity = identity  # what results are keyed by; dtype_name says what the towers compute in
        self.device = device
        self.compiled = compile

        config = model.config
        if identity.family == "clip":
            self.embed_dim: int = config.projection_dim  # both towers end in a projection to this size
        else:
            self.embed_dim = config.vision_config.hidden_size
            if config.text_config.projection_size != self.embed_dim:
                raise ModelNotFoundError(f"{identity.ref!r}: image and text embeddings differ in size; not a SigLIP.")
        self.image_size = identity.image_size
        self.batch_size = batch_size if batch_size is not None else default_batch_size(device, self.image_size)
        self.text_max_length: int = config.text_config.max_position_embeddings

        self._autocast_device = device.split(":")[0]
        self._autocast_dtype = _AUTOCAST_DTYPES.get(identity.dtype_name)
        self._pinned = self._autocast_device == "cuda"  # pinned host buffers and non-blocking copies
        self._mean = torch.as_tensor(image_processor.image_mean, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self._std = torch.as_tensor(image_processor.image_std, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self._lock = threading.Lock()

        def image_tower(pixel_values: torch.Tensor) -> torch.Tensor:
            return model.get_image_features(pixel_values=pixel_values).pooler_output

        # torch.compile is lazy: the first batch compiles (tens of seconds even for the tiny model), the
        # first batch of another size recompiles once with a dynamic batch dimension.
        self._image_tower = torch.compile(image_tower) if compile else image_tower

    def settings(self) -> dict[str, object]:
        """What this encoder runs with, for run records and benchmark output."""
        kind = self._autocast_device
        if kind == "cuda":
            device_name = torch.cuda.get_device_name(torch.device(self.device))
        else:
            device_name = _cpu_name()
        return {
            "model": self.identity.ref,
            "model_id": self.identity.model_id,
            "revision": self.identity.revision,
            "fingerprint": self.identity.fingerprint,
            "trained": self.identity.trained,
            "family": self.identity.family,
            "calibration": self.identity.calibration,  # how cosines become affinities (actalign.calibration)
            "device": self.device,
            "device_name": device_name,
            "dtype": self.identity.dtype_name,  # weights stay float32; anything else is autocast
            "autocast": self._autocast_dtype is not None,
            "batch_size": self.batch_size,
            "image_size": list(self.image_size),
            "compile": self.compiled,
            "inference_mode": True,
            "pinned_memory": self._pinned,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "torch_version": torch.__version__,
        }

    @contextmanager
    def _inference(self) -> Iterator[None]:
        with (
            torch.inference_mode(),
            torch.autocast(
                self._autocast_device,
                dtype=self._autocast_dtype or torch.bfloat16,
                enabled=self._autocast_dtype is not None,
            ),
        ):
            yield

    def _normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) on the host -> pixel values (N, 3, H, W) on the device, as the image processor computes them.

        The upload is uint8 (a quarter of float32's bytes), non-blocking from pinned memory;
        rescaling and normalisation run on the device.
        """
        pixels = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        pixels = pixels.clone() if pixels.dtype == torch.float32 else pixels.float()  # never the caller's memory: in place below
        if self.image_processor.do_rescale:
            pixels.mul_(self.image_processor.rescale_factor)
        if self.image_processor.do_normalize:
            pixels.sub_(self._mean).div_(self._std)
        return pixels

    def preprocess_images(self, frames: np.ndarray) -> torch.Tensor:
        """Pixel values on the device. Frames already at ``image_size`` skip PIL: same numbers, much faster."""
        if tuple(frames.shape[1:3]) == self.image_size:
            return self._normalise(torch.from_numpy(np.ascontiguousarray(frames)))
        batch = self.image_processor(images=list(frames), return_tensors="pt", input_data_format="channels_last")
        return batch.pixel_values.to(self.device)

    def new_batch_buffer(self, rows: int | None = None) -> torch.Tensor:
        """A host buffer for one batch of frames: uint8 (rows or batch_size, H, W, 3), pinned on cuda.

        Fill it through ``buffer.numpy()`` and pass ``buffer[:n]`` to ``submit_images``.
        """
        shape = (rows or self.batch_size, *self.image_size, 3)
        return torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)

    def submit_images(self, frames: torch.Tensor | np.ndarray) -> PendingFeatures:
        """Start encoding uint8 frames (N, H, W, 3) at ``image_size``, N at most a few batches.

        CPU: runs now. cuda: queues the upload, the forward pass and the copy
        back, and returns at once, so the caller can fill the next batch while
        the GPU works. A pinned input buffer must not be refilled before this
        batch's ``result()`` (or ``done()``) says it is finished.
        """
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if tuple(frames.shape[1:3]) != self.image_size or frames.dtype != torch.uint8 or frames.shape[-1] != 3:
            raise ValueError(f"submit_images wants uint8 frames (N, {self.image_size[0]}, {self.image_size[1]}, 3), got {frames.dtype} {tuple(frames.shape)}")
        with self._lock, self._inference():
            features = self._image_tower(self._normalise(frames)).float()
            if not self._pinned:
                return PendingFeatures(features)
            host = torch.empty(features.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(features, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(torch.device(self.device)))
            return PendingFeatures(host, event)

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (N, H, W, 3) -> float32 (N, embed_dim), not normalised."""
        if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
            got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
            raise ValueError(f"embed_images wants a uint8 array (N, H, W, 3), got {got}")
        out = [np.zeros((0, self.embed_dim), np.float32)]
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            if tuple(chunk.shape[1:3]) == self.image_size:
                out.append(self.submit_images(chunk).result())
                continue
            pixels = self.preprocess_images(chunk)  # other sizes: the image processor's PIL resize
            with self._lock, self._inference():
                features = self._image_tower(pixels)
            out.append(features.float().cpu().numpy())
        return np.concatenate(out)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """The text tower's inputs, padded to the model's text length.

        SigLIP and SigLIP 2 were trained on fixed-length, unmasked text (SigLIP 2 lowercased);
        CLIP's causal text tower takes its attention mask, as its processor gives it.
        """
        family = self.identity.family
        texts = [text.lower() for text in texts] if family == "siglip2" else list(texts)
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.text_max_length, return_tensors="pt")
        names = ("input_ids", "attention_mask") if family == "clip" else ("input_ids",)
        return {name: batch[name].to(self.device) for name in names}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 (N, embed_dim), not normalised."""
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError("embed_texts wants a sequence of strings (a bare string would be split into characters)")
        texts = list(texts)
        out = [np.zeros((0, self.embed_dim), np.float32)]
        for start in range(0, len(texts), self.batch_size):
            inputs = self.tokenize(texts[start : start + self.batch_size])
            with self._lock, self._inference():
                features = self.model.get_text_features(**inputs).pooler_output
            out.append(features.float().cpu().numpy())
        return np.concatenate(out)


_LOAD_LOCK = threading.Lock()
_ENCODERS: dict[tuple[str, str | None, str | None, str, int | None, str, bool], Encoder] = {}


def load_encoder(
    model: str = DEFAULT_MODEL,
    device: str = "auto",
    batch_size: int | None = None,
    bf16: bool = False,
    *,
    revision: str | None = None,
    calibration: str | None = None,
    precision: str | None = None,
    compile: bool = False,
) -> Encoder:
    """Load once per process and argument set; thread-safe.

    ``model`` is a registry name, a Hugging Face hub id or a folder with a saved SigLIP, SigLIP 2 or CLIP;
    ``revision`` a branch, tag or commit of a hub model; ``calibration`` a name of
    ``actalign.calibration.CHOICES`` (None: the model family's default).
    ``batch_size`` defaults to ``default_batch_size`` of the device and the model's input size.
    ``precision``: ``float32``, ``bfloat16``, ``float16`` (autocast; weights stay float32) or
    ``auto`` (``choose_precision``); when None, ``bf16`` picks bfloat16 or float32.
    ``compile``: ``torch.compile`` the image tower (off by default: the first batch then takes
    tens of seconds to compile; worth it for long runs on a GPU).
    """
    resolved_device = choose_device(device)
    if batch_size is not None and batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if batch_size is None and resolved_device.split(":")[0] == "cpu":
        batch_size = DEFAULT_BATCH_SIZE["cpu"]  # known before loading: one cache entry with an explicit 32
    resolved_precision = choose_precision(resolved_device, precision or ("bfloat16" if bf16 else "float32"))
    key = (model, revision, calibration, resolved_device, batch_size, resolved_precision, bool(compile))
    with _LOAD_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = _load(model, revision, calibration, resolved_device, batch_size, resolved_precision, bool(compile))
        return _ENCODERS[key]


def clear_encoder_cache() -> None:
    """Forget loaded encoders (tests; freeing memory between models)."""
    with _LOAD_LOCK:
        _ENCODERS.clear()


def _hub_access() -> tuple[bool, str | None]:
    """(local_files_only, why the hub cannot be used); checked first so a dead network cannot hang loading."""
    if offline_env():
        return True, "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
    if not hub_reachable():
        return True, f"the Hugging Face hub ({hub_endpoint()}) is unreachable"
    return False, None


def _load(ref: str, revision: str | None, calibration: str | None, device: str, batch_size: int | None, precision: str, compile: bool) -> Encoder:
    target = resolve(ref, revision)
    local_only, hub_problem = _hub_access() if target.is_hub else (True, None)
    options = dict(local_files_only=local_only, revision=target.revision)
    try:
        # float32 weights always: transformers 5 defaults to the checkpoint's dtype; bf16 is autocast.
        model = AutoModel.from_pretrained(target.location, dtype=torch.float32, **options)
        tokenizer = AutoTokenizer.from_pretrained(target.location, **options)
        image_processor = AutoImageProcessor.from_pretrained(target.location, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFoundError(_load_failure(ref, target, hub_problem, exc)) from exc
    if not all(hasattr(model, name) for name in ("get_image_features", "get_text_features", "logit_scale")):
        raise ModelNotFoundError(f"{ref!r} loads as {type(model).__name__}, not an image-text dual encoder (SigLIP, SigLIP 2 or CLIP).")
    bias = getattr(model, "logit_bias", None)
    logits = (_scalar(model.logit_scale), None if bias is None else _scalar(bias))
    identity = identity_of(ref, target, local_folder(target), precision, logits, calibration)
    return Encoder(model.to(device).eval(), tokenizer, image_processor, identity=identity, device=device, batch_size=batch_size, compile=compile)


def _scalar(parameter: torch.Tensor) -> float:
    return float(parameter.detach().float().cpu().item())


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_failure(ref: str, target: Target, hub_problem: str | None, exc: Exception) -> str:
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
    advice = "Use `--model tiny-random` for an offline smoke test, or `--model /path/to/folder` with a saved SigLIP, SigLIP 2 or CLIP."
    if not target.is_hub:
        return f"Cannot load a model from folder {target.location} (model {ref!r}): {detail}. {advice}"
    if hub_problem:
        return (
            f"Cannot load model {target.location!r}: {hub_problem}, and it is not in the local "
            f"Hugging Face cache ({detail}). {advice}"
        )
    return (
        f"Cannot load model {target.location!r} from the Hugging Face hub (the hub is reachable): "
        f"does the id exist, and is it a SigLIP, SigLIP 2 or CLIP checkpoint? ({detail}). {advice}"
    )
