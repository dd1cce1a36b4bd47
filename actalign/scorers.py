"""Scorers: how well a video's frames match one candidate class.

Every scorer has the same call: ``scorer(frames, class_texts, calibration) -> Score``.
Embeddings arrive as the towers return them (not normalised); each scorer
normalises what it needs. Higher scores mean a better match; a video's
prediction is its best-scoring candidate.

- ``mean-pool`` (the paper's baseline): cosine of the mean of the L2-normalised
  frame embeddings with the class-name text embedding.
- ``actalign`` (Aghdam & Hu 2025): optional moving-average smoothing of the
  frames, affinities ``A[k,t] = sigmoid(exp(logit_scale) * cos(step_k, frame_t)
  + logit_bias)`` with the scale and bias of the same checkpoint, then a
  max-plus DTW from (first step, first frame) to (last step, last frame); the
  score is the summed affinity on the best path divided by its length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

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
    score: float
    path_len: int | None = None


class Scorer(Protocol):
    name: str

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score: ...


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """Normalise each row on its own (a zero row stays zero)."""
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms == 0.0, 1.0, norms)


def moving_average(frames: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average along time with zero padding, same length; width <= 1 is a no-op."""
    if width <= 1:
        return frames
    kernel = np.ones(width) / width
    left = (width - 1) // 2
    padded = np.pad(frames, ((left, width - 1 - left), (0, 0)))
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(frames.shape[1])], axis=1)


def affinity(frames: np.ndarray, steps: np.ndarray, calibration: Calibration) -> np.ndarray:
    """A[k, t]: the checkpoint's sigmoid probability that step k matches frame t."""
    cosine = l2_normalise(steps) @ l2_normalise(frames).T
    logits = cosine * np.exp(calibration.logit_scale) + calibration.logit_bias
    return 1.0 / (1.0 + np.exp(-logits))


def max_plus_dtw(affinities: np.ndarray) -> tuple[float, list[tuple[int, int]]]:
    """Best monotone path from (0, 0) to (K-1, T-1) maximising summed affinity.

    Moves are (0,+1), (+1,0) and (+1,+1); ties prefer, in order, staying on the
    step, advancing the step, and the diagonal, so the path is deterministic.
    Returns the path's summed affinity and the path itself.
    """
    steps, times = affinities.shape
    total = np.full((steps, times), -np.inf)
    total[0, 0] = affinities[0, 0]
    for k in range(steps):
        for t in range(times):
            if k == 0 and t == 0:
                continue
            best = max(
                total[k, t - 1] if t > 0 else -np.inf,
                total[k - 1, t] if k > 0 else -np.inf,
                total[k - 1, t - 1] if k > 0 and t > 0 else -np.inf,
            )
            total[k, t] = affinities[k, t] + best
    path = [(steps - 1, times - 1)]
    k, t = steps - 1, times - 1
    while (k, t) != (0, 0):
        options = [(k, t - 1), (k - 1, t), (k - 1, t - 1)]
        k, t = max((o for o in options if o[0] >= 0 and o[1] >= 0), key=lambda o: total[o])
        path.append((k, t))
    return float(total[-1, -1]), path[::-1]


@dataclass(frozen=True)
class MeanPool:
    name: str = "mean-pool"

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score:
        video = l2_normalise(l2_normalise(frames).mean(axis=0))
        return Score(float(video @ l2_normalise(texts.name)))


@dataclass(frozen=True)
class ActAlign:
    smoothing: int = 0
    name: str = "actalign"

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score:
        smoothed = moving_average(np.asarray(frames, dtype=np.float64), self.smoothing)
        total, path = max_plus_dtw(affinity(smoothed, texts.steps, calibration))
        return Score(total / len(path), len(path))


SCORER_NAMES = ("mean-pool", "actalign")


def make_scorer(name: str, smoothing: int = 0) -> Scorer:
    """Build a scorer by its public name."""
    if name == "mean-pool":
        return MeanPool()
    if name == "actalign":
        return ActAlign(smoothing=smoothing)
    raise InputError(f"unknown scorer {name!r}; choose from {', '.join(SCORER_NAMES)}")
