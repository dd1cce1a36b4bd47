"""The recipe of ``toy-shapes`` (``actalign.toy_model``): readable without torch, so the
model's folder, and so its identity, is known without building or loading it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
CODE = (HERE / "shapes.py", HERE / "toy_recipe.py", HERE / "toy_model.py")  # the code that follows the recipe


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; its hash names the cache folder."""

    seed: int = 0
    steps: int = 1300
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    hidden: int = 96
    vision_layers: int = 2
    text_layers: int = 1
    heads: int = 4
    image_size: int = 32
    patch_size: int = 8
    text_length: int = 24
    vocab_size: int = 64
    logit_scale: float = 10.0  # exp(t), fixed: see the module docstring
    logit_bias: float = -5.0  # where the bias starts; it is learned
    max_noise: float = 15.0
    max_tint: int = 20
    max_shade: int = 45
    position_jitter: float = 0.04  # of the image side, around each named position
    held_out: tuple[tuple[str, str, str], ...] = field(
        default=(
            ("green", "circle", "white"),
            ("orange", "square", "black"),
            ("purple", "triangle", "grey"),
            ("pink", "star", "black"),
            ("cyan", "cross", "grey"),
            ("red", "ring", "white"),
            ("blue", "star", "grey"),
            ("yellow", "cross", "black"),
            ("red", "triangle", "white"),
            ("blue", "circle", "black"),
        )
    )
    """(colour, shape, background) never drawn in training; the demo's own scenes are not among them."""

    def digest(self) -> str:
        """The recipe and the code that follows it: any change names a new folder, so the model is rebuilt."""
        hasher = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode())
        for source in CODE:
            hasher.update(source.read_bytes())
        return hasher.hexdigest()[:12]

    def folder(self) -> str:
        """The model's folder name in the models cache."""
        return f"toy-shapes-{self.digest()}"


RECIPE = Recipe()
