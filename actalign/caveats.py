"""What a model is, when it is not a real checkpoint: marker files, banners and short labels.

A folder built here carries a marker file saying what it is; every run with
it shows the matching banner on screen, in its log and in its report. Pure
strings, so reports and queries can use them without loading a model.
"""

from __future__ import annotations

UNTRAINED_MARKER = "ACTALIGN_UNTRAINED"
TOY_MARKER = "ACTALIGN_TOY"

UNTRAINED_BANNER = (
    "UNTRAINED MODEL: tiny-random (or a checkpoint marked ACTALIGN_UNTRAINED) has random weights; "
    "every score and accuracy in this run is meaningless (a smoke test, not a result)."
)
TOY_BANNER = (
    "TOY MODEL: toy-shapes (or a checkpoint marked ACTALIGN_TOY) was trained here on generated shapes only; "
    "its scores mean something for generated shapes and nothing for real video."
)

BANNERS: dict[str, str] = {UNTRAINED_MARKER: UNTRAINED_BANNER, TOY_MARKER: TOY_BANNER}
"""The banner of each marker file."""

_LABELS = {UNTRAINED_BANNER: "UNTRAINED: random weights", TOY_BANNER: "TOY: trained on generated shapes only"}


def banner(trained: bool, caveat: str | None) -> str | None:
    """The banner of a model or run: its own caveat, else the untrained one if untrained (older run records have no caveat)."""
    return caveat or (None if trained else UNTRAINED_BANNER)


def model_label(trained: bool, caveat: str | None) -> str:
    """A few words for a figure or a summary line: what kind of model produced these numbers."""
    shown = banner(trained, caveat)
    return _LABELS.get(shown, shown) if shown else "trained"
