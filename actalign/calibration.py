"""How a model's cosines become the affinities the alignment scorers sum: the calibration choices, declared once.

The paper's affinity is SigLIP's own match probability, sigmoid(exp(scale) * cos + bias),
with the scale and bias of the checkpoint. A model trained with a softmax loss (CLIP and
its kin) has a temperature but no bias, so a calibration says where its sigmoid is
centred. Every choice here is a sigmoid, sigmoid(kappa * cos + bias), so it reaches the
scorers as an effective (logit_scale, logit_bias) pair: the alignment code is the same for
every choice, and ``sigmoid`` on a SigLIP gives exactly the checkpoint's numbers.

- ``sigmoid``: the checkpoint's scale and bias (the paper's; SigLIP and SigLIP 2 only).
- ``midpoint``: the checkpoint's temperature, the bias putting the sigmoid's midpoint
  at the family's typical cosine between a matching and a non-matching pair
  (``FAMILY_MIDPOINT``): bias = -exp(scale) * midpoint.
- ``cosine``: sigmoid(2 * cos), within 0.02 of (1 + cos) / 2 for |cos| <= 0.5: the cosine
  itself in (0, 1), no temperature (kappa = 2 for the scorers that use one).

Why each family has its default: docs/models.md ("Calibration").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from actalign.errors import InputError


@dataclass(frozen=True)
class CalibrationChoice:
    name: str
    needs_bias: bool  # only a checkpoint with a logit_bias (sigmoid-trained) can use it
    description: str


CHOICES: dict[str, CalibrationChoice] = {
    choice.name: choice
    for choice in (
        CalibrationChoice("sigmoid", True, "the checkpoint's own scale and bias (the paper's; sigmoid-trained models only)"),
        CalibrationChoice("midpoint", False, "the checkpoint's temperature, centred on the family's typical cosine"),
        CalibrationChoice("cosine", False, "sigmoid(2 cos), about (1 + cos) / 2: no temperature, no bias"),
    )
}
PAPER = "sigmoid"  # recorded in no key: results keyed before calibrations existed are this one's

# The families actalign loads, and the default calibration of each.
FAMILY_DEFAULT = {"siglip": "sigmoid", "siglip2": "sigmoid", "clip": "midpoint"}

# Where each family's sigmoid is centred (cosine at affinity 0.5). SigLIP: so400m's own
# -bias / exp(scale) = 12.9 / 117.3, about 3/4 of the way from an unrelated pair (about 0)
# to a matching one (about 0.15). CLIP: the same place in its range, unrelated pairs about
# 0.15 and matching ones about 0.30 (its modality gap). Too low a midpoint and background
# frames saturate (0.2 on the CLIP-like proxy: actalign's background accuracy 0.88 -> 0.38);
# docs/models.md has the measurements.
FAMILY_MIDPOINT = {"siglip": 0.11, "siglip2": 0.11, "clip": 0.25}
COSINE_SCALE = math.log(2.0)


def default_for(family: str) -> str:
    return FAMILY_DEFAULT[family]


def check_choice(name: str, family: str, has_bias: bool) -> str:
    """``name`` when this model can use it; an InputError naming the choices otherwise."""
    choice = CHOICES.get(name)
    if choice is None:
        raise InputError(f"Unknown --calibration {name!r}: choose one of {', '.join(CHOICES)}.")
    if choice.needs_bias and not has_bias:
        raise InputError(
            f"--calibration {name!r} needs the checkpoint's logit_bias, and this {family} model has none "
            f"(trained with a softmax loss): use 'midpoint' or 'cosine'."
        )
    return name


def effective(name: str, family: str, logit_scale: float, logit_bias: float | None) -> tuple[float, float]:
    """(logit_scale, logit_bias) of the sigmoid that calibration ``name`` makes of this checkpoint's cosines."""
    check_choice(name, family, logit_bias is not None)
    if name == "sigmoid":
        return logit_scale, logit_bias  # type: ignore[return-value]  # checked above: a bias exists
    if name == "midpoint":
        return logit_scale, -math.exp(logit_scale) * FAMILY_MIDPOINT[family]
    return COSINE_SCALE, 0.0
