"""Scorers: how well a video's frames match each candidate class.

Every scorer has the same calls: ``scorer(frames, class_texts, calibration) -> Score``
for one candidate and ``scorer.score_many(frames, candidates, calibration) -> list[Score]``
for all candidates of a video at once (one matrix product, one compiled call).
Embeddings arrive as the towers return them (not normalised); each scorer
normalises what it needs. Higher scores mean a better match; a video's
prediction is its best-scoring candidate. Bad embeddings (empty, NaN/inf,
mismatched dimension) raise ``AlignmentInputError``, an ``ItemError``.

- ``mean-pool`` (the paper's baseline): cosine of the mean of the L2-normalised
  frame embeddings with the class-name text embedding (each normalised on its own).
- ``actalign`` (Aghdam & Hu 2025): smoothing, sigmoid affinities with the
  checkpoint's own scale and bias, max-plus DTW from (first step, first frame)
  to (last step, last frame), score = summed affinity / path length.
- ``actalign-subsequence``: open begin and end in time; the path of best mean.
- ``actalign-segment``: each frame assigned to one step, in order; mean over frames.

The alignment math, its modes and their limits are in ``actalign.align``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from actalign.align import MODES, align_candidates, check_rows, l2_normalise
from actalign.errors import InputError


@dataclass(frozen=True)
class ClassTexts:
    """A class's embedded texts: its steps in order (K x d) and its name (d,)."""

    class_id: str
    steps: np.ndarray
    name: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """The checkpoint's own sigmoid calibration: logits = cos * exp(logit_scale) + logit_bias."""

    logit_scale: float
    logit_bias: float


@dataclass(frozen=True)
class Score:
    """A (video, candidate) score; path_len: cells on the alignment path (None for mean-pool)."""

    score: float
    path_len: int | None = None


class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score: ...

    def score_many(self, frames: np.ndarray, candidates: Sequence[ClassTexts], calibration: Calibration) -> list[Score]: ...


class _OneOfMany:
    """``__call__`` for one candidate, by way of ``score_many``."""

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score:
        return self.score_many(frames, [texts], calibration)[0]


@dataclass(frozen=True)
class MeanPool(_OneOfMany):
    name: str = "mean-pool"

    def score_many(self, frames: np.ndarray, candidates: Sequence[ClassTexts], calibration: Calibration) -> list[Score]:
        if not candidates:
            return []
        frames = check_rows(frames, "frames")
        names = np.concatenate([check_rows(np.reshape(c.name, (1, -1)), f"name of {c.class_id!r}", frames.shape[1]) for c in candidates])
        video = l2_normalise(l2_normalise(frames).sum(axis=0))  # the direction of the mean
        return [Score(float(cosine)) for cosine in l2_normalise(names) @ video]


@dataclass(frozen=True)
class ActAlign(_OneOfMany):
    """An alignment scorer; ``mode`` is one of ``actalign.align.MODES``, ``smoothing`` the moving-average width."""

    smoothing: int = 0
    mode: str = "global"

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.smoothing < 0:
            raise ValueError(f"ActAlign needs a mode in {MODES} and smoothing >= 0, got {self.mode!r} and {self.smoothing}")

    @property
    def name(self) -> str:
        return "actalign" if self.mode == "global" else f"actalign-{self.mode}"

    def score_many(self, frames: np.ndarray, candidates: Sequence[ClassTexts], calibration: Calibration) -> list[Score]:
        alignments = align_candidates(
            frames,
            [c.steps for c in candidates],
            logit_scale=calibration.logit_scale,
            logit_bias=calibration.logit_bias,
            smooth=self.smoothing,
            mode=self.mode,
            labels=[f"steps of {c.class_id!r}" for c in candidates],
        )
        return [Score(a.score, a.path_len) for a in alignments]


ALIGNMENT_MODES = {ActAlign(mode=mode).name: mode for mode in MODES}  # scorer name -> actalign.align mode
SCORER_NAMES = ("mean-pool", *ALIGNMENT_MODES)
DEFAULT_SCORERS = ("mean-pool", "actalign")  # the paper's baseline and method; variants on request


def make_scorer(name: str, smoothing: int = 0) -> Scorer:
    """Build a scorer by its public name; ``smoothing`` applies to the alignment scorers."""
    if name == "mean-pool":
        return MeanPool()
    if name in ALIGNMENT_MODES:
        return ActAlign(smoothing=smoothing, mode=ALIGNMENT_MODES[name])
    raise InputError(f"unknown scorer {name!r}; choose from {', '.join(SCORER_NAMES)}")
