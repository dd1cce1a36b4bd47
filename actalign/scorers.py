"""Scorers: how well a video's frames match each candidate class.

Every scorer has the same calls: ``scorer(frames, class_texts, calibration) -> Score``
for one candidate and ``scorer.score_many(frames, candidates, calibration) -> list[Score]``
for all candidates of a video at once (one matrix product, one compiled call);
``scorer.score_video(video, candidates)`` scores through a ``Video`` that several
scorers share, so a video's checks, norms and affinities are computed once for all
of them (the score stage's path).
Embeddings arrive as the towers return them (not normalised); each scorer
normalises what it needs. Higher scores mean a better match; a video's
prediction is its best-scoring candidate. Bad embeddings (empty, NaN/inf,
mismatched dimension) raise ``AlignmentInputError``, an ``ItemError``; a scorer
that needs texts a class does not have (attributes, sub-texts) raises
``MissingTextsError``, an ``ItemError`` too. ``SCORERS``, the table of every
scorer by name, says which scorer needs which, and which ones smooth.

Notation: f_t the L2-normalised frame embeddings (T x d), c the normalised
class-name embedding, kappa = exp(logit_scale) of the checkpoint.

The paper's baseline and method, and the alignment variants:

- ``mean-pool`` (the paper's baseline): cosine of the mean of the L2-normalised
  frame embeddings with the class-name text embedding (each normalised on its own).
- ``actalign`` (Aghdam & Hu 2025): smoothing, sigmoid affinities with the
  checkpoint's own scale and bias, max-plus DTW from (first step, first frame)
  to (last step, last frame), score = summed affinity / path length.
- ``actalign-subsequence``: open begin and end in time; the path of best mean.
- ``actalign-segment``: each frame assigned to one step, in order; mean over frames.

Baselines and the scoring cores of related systems, training-free (each class's
docstring says what it keeps and what it replaces):

- ``max-pool``: element-wise max of the frames, cosine with c.
- ``attribute-saliency`` (Kim, Kim & Lee; BIKE's video concept spotting): frames
  weighted by how strongly the class's attribute keywords spot them.
  ``attribute-saliency-augmented`` compares with c plus the mean attribute.
- ``storyboard`` (Liu et al. 2024): coarse and fine frame weights from the class
  text and its storyboard sub-texts.
- ``drop-dtw`` (Dvornik et al. 2021): steps aligned in order, frames may be dropped;
  the drop value is a percentile of the candidate's affinities (the original's rule).
  ``drop-dtw-calibrated``: the drop value is the fixed affinity 0.5.
- ``ost`` (Chen et al. 2024): optimal transport between frames and sub-texts.

The alignment math, its modes and their limits are in ``actalign.align``; the
pooling and transport math in ``actalign.pooling``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Protocol

import numpy as np

from actalign import pooling
from actalign.align import (
    DROP_KEEP_PERCENTILE,
    MODES,
    AlignmentInputError,
    StackedAffinities,
    block_scores,
    candidate_affinities,
    check_rows,
    checked_frames,
    drop_dtw_blocks,
    l2_normalise,
    row_norms,
)
from actalign.errors import InputError, ItemError


@dataclass(frozen=True)
class ClassTexts:
    """A class's embedded texts, as the text tower returns them (each row is normalised by the scorers).

    - ``steps``: its script, in order (K x d);
    - ``name``: its name (d,);
    - ``attributes``: optional, ~8 attribute keywords, each embedded on its own (J x d);
    - ``subtexts``: optional, ~4 storyboard sub-texts, each embedded on its own (M x d).
    """

    class_id: str
    steps: np.ndarray
    name: np.ndarray
    attributes: np.ndarray | None = None
    subtexts: np.ndarray | None = None

    @cached_property
    def step_norms(self) -> np.ndarray:
        """The steps' row norms, checked (``actalign.align.row_norms``): once per class, however many videos it scores."""
        return row_norms(self.steps, f"steps of {self.class_id!r}")


class MissingTextsError(ItemError, ValueError):
    """A scorer needs texts (attributes, sub-texts) that a candidate class does not have."""


# What each kind of optional text is, for the error that asks for it.
_TEXT_KINDS = {
    "attributes": "attribute keywords (about 8 short words or phrases naming the objects, body parts, "
    "motions and qualities that mark the action, each embedded on its own: a J x d array)",
    "subtexts": "storyboard sub-texts (about 4 short sentences, each describing one visible moment "
    "of the action, each embedded on its own: an M x d array)",
}


@dataclass(frozen=True)
class Calibration:
    """The checkpoint's own sigmoid calibration: logits = cos * exp(logit_scale) + logit_bias."""

    logit_scale: float
    logit_bias: float


@dataclass(frozen=True)
class Score:
    """A (video, candidate) score; path_len: cells on the alignment path (None for the order-free scorers)."""

    score: float
    path_len: int | None = None


class Video:
    """One video as the scorers see it, each part computed once however many scorers ask for it.

    The frames are checked (non-empty, finite) with their norms when it is made; their L2-normalised
    rows on first use; the affinities of a list of candidates' steps once per
    smoothing width and list, so every alignment scorer of a video shares one
    matrix product and one sigmoid (the score stage asks each scorer for the
    candidates it lacks: on a first run, the same list for all).
    """

    def __init__(self, frames: np.ndarray, calibration: Calibration) -> None:
        self._checked = checked_frames(frames)
        self.frames = self._checked.rows
        self.calibration = calibration
        self._unit: np.ndarray | None = None
        self._affinities: dict[tuple[int, tuple[int, ...]], tuple[Sequence[ClassTexts], StackedAffinities]] = {}

    @property
    def unit_frames(self) -> np.ndarray:
        """The frames' rows L2-normalised (float64)."""
        if self._unit is None:
            self._unit = l2_normalise(self.frames)
        return self._unit

    def affinities(self, candidates: Sequence[ClassTexts], smooth: int) -> StackedAffinities:
        """The affinity of each candidate's steps with the frames smoothed by ``smooth`` (``actalign.align.affinity``)."""
        key = (smooth, tuple(map(id, candidates)))
        if key not in self._affinities:  # the candidates are kept with their matrices, so their ids stay theirs
            scale, bias = self.calibration.logit_scale, self.calibration.logit_bias
            norms = [c.step_norms for c in candidates]
            stacked = candidate_affinities(self._checked, [c.steps for c in candidates], _steps_label(candidates), scale, bias, smooth, norms)
            self._affinities[key] = (candidates, stacked)
        return self._affinities[key][1]


def _steps_label(candidates: Sequence[ClassTexts]) -> Callable[[int], str]:
    """Names candidate i's steps in an error: built only for a bad candidate, not for every video's."""
    return lambda i: f"steps of {candidates[i].class_id!r}"


class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score: ...

    def score_many(self, frames: np.ndarray, candidates: Sequence[ClassTexts], calibration: Calibration) -> list[Score]: ...

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]: ...


class _OneOfMany:
    """``__call__`` for one candidate and ``score_many`` for one video, by way of ``score_video``."""

    def __call__(self, frames: np.ndarray, texts: ClassTexts, calibration: Calibration) -> Score:
        return self.score_many(frames, [texts], calibration)[0]

    def score_many(self, frames: np.ndarray, candidates: Sequence[ClassTexts], calibration: Calibration) -> list[Score]:
        return self.score_video(Video(frames, calibration), candidates) if candidates else []

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        raise NotImplementedError


class _NamePooling(_OneOfMany):
    """Scorers that pool the frames with text-guided weights and compare with each candidate's name: the
    checks and the normalisation once per video, ``score_one`` per candidate."""

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        names = _names(video.frames, candidates)
        kappa = _kappa(video.calibration)
        return [Score(self.score_one(video.frames, video.unit_frames, name, candidate, kappa)) for candidate, name in zip(candidates, names)]

    def score_one(self, frames: np.ndarray, unit_frames: np.ndarray, name: np.ndarray, candidate: ClassTexts, kappa: float) -> float:
        raise NotImplementedError


def _names(frames: np.ndarray, candidates: Sequence[ClassTexts]) -> np.ndarray:
    """The candidates' name embeddings, checked against the frames and L2-normalised (n x d)."""
    return l2_normalise(
        np.concatenate([check_rows(np.reshape(c.name, (1, -1)), f"name of {c.class_id!r}", frames.shape[1]) for c in candidates])
    )


def _texts(scorer: str, frames: np.ndarray, candidate: ClassTexts, field: str) -> np.ndarray:
    """A candidate's optional texts (``field``), checked and L2-normalised; MissingTextsError when absent."""
    rows = getattr(candidate, field)
    if rows is None:
        raise MissingTextsError(
            f"scorer {scorer!r} needs the {field} of class {candidate.class_id!r} (ClassTexts.{field}), and it has none: "
            f"generate and embed its {_TEXT_KINDS[field]}"
        )
    return l2_normalise(check_rows(rows, f"{field} of {candidate.class_id!r}", frames.shape[1]))


def _kappa(calibration: Calibration) -> float:
    """exp(logit_scale): the checkpoint's inverse temperature."""
    scale = calibration.logit_scale
    if not (math.isfinite(scale) and math.isfinite(calibration.logit_bias)) or scale > 700:
        raise AlignmentInputError(f"calibration must be finite, got logit_scale={scale}, logit_bias={calibration.logit_bias}")
    return math.exp(scale)


@dataclass(frozen=True)
class MeanPool(_OneOfMany):
    name: str = "mean-pool"

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        names = _names(video.frames, candidates)
        pooled = l2_normalise(video.unit_frames.sum(axis=0))  # the direction of the mean
        return [Score(float(cosine)) for cosine in names @ pooled]


@dataclass(frozen=True)
class MaxPool(_OneOfMany):
    """Element-wise max over time of the L2-normalised frames, then cosine with the class name.

    A classic order-free baseline beside mean-pool: a feature present in a few frames
    only survives the max, where the mean dilutes it.
    """

    name: str = "max-pool"

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        names = _names(video.frames, candidates)
        pooled = l2_normalise(video.unit_frames.max(axis=0))
        return [Score(float(cosine)) for cosine in names @ pooled]


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

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        scores, lengths = block_scores(video.affinities(candidates, self.smoothing), range(len(candidates)), self.mode)
        return [Score(score, length) for score, length in zip(scores, lengths)]


@dataclass(frozen=True)
class DropDTW(_OneOfMany):
    """Drop-DTW (after Dvornik et al., "Drop-DTW: Aligning Common Signal Between Sequences
    While Dropping Outliers", NeurIPS 2021) of the class's steps with the frames.

    Every frame is matched to one step or dropped; the steps are matched in order, each to
    at least one frame. A matched frame earns its affinity A[k, t] (``actalign.align.affinity``:
    the checkpoint's sigmoid, the same as ``actalign``); a dropped frame earns the drop value b.
    Score = the optimum / T: every frame adds one term, so scripts of any length compare
    fairly, and the score is exactly what the DP maximises (the mean affinity over matched
    cells alone would reward dropping all but one frame per step). Details, ties and the
    T < K rule in ``actalign.align``.

    The drop value b:
    - by default, the original's percentile rule: b = the affinity exceeded by
      ``keep_percentile`` % of this candidate's cells (default 30: the 30th percentile of
      the match costs 1 - A, i.e. the 70th percentile of the affinities). It adapts to any
      affinity scale, but b is then the candidate's own: it sits at the level of its
      mismatches, so background frames that faintly resemble a step are matched, not
      dropped (on the ``background`` proxy this scorer degrades like ``actalign``).
    - ``drop_affinity`` (the ``drop-dtw-calibrated`` scorer: 0.5): a fixed b for every
      candidate. The checkpoint's sigmoid is a calibrated match probability, so 0.5 means
      "drop a frame that no step matches more likely than not"; the same for all
      candidates, so dropped frames cost them all alike (this one keeps its accuracy on
      the ``background`` proxy). It assumes a sigmoid-calibrated checkpoint (SigLIP).

    Kept from the original: the DP (one-sided drops of video frames, the original's
    step-localisation setting), a drop cost from a percentile of the match costs (its
    "logit" drop cost; ``keep_percentile`` as in its code), ``contiguous`` (its default:
    no drops inside a step's run of frames). Replaced: its costs (negative log of a softmax
    over steps with a learned temperature) by the checkpoint's sigmoid affinities; no
    learned drop cost (its "distractor" embedding); no training.
    """

    smoothing: int = 0
    keep_percentile: float = DROP_KEEP_PERCENTILE
    drop_affinity: float | None = None
    contiguous: bool = True

    def __post_init__(self) -> None:
        if self.smoothing < 0 or not 0.0 <= self.keep_percentile <= 100.0:
            raise ValueError(f"DropDTW needs smoothing >= 0 and keep_percentile in [0, 100], got {self.smoothing} and {self.keep_percentile}")
        if self.drop_affinity is not None and not 0.0 <= self.drop_affinity <= 1.0:
            raise ValueError(f"DropDTW's drop_affinity is an affinity in [0, 1], got {self.drop_affinity}")

    @property
    def name(self) -> str:
        return "drop-dtw" if self.drop_affinity is None else "drop-dtw-calibrated"

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        stacked = video.affinities(candidates, self.smoothing)
        alignments = drop_dtw_blocks(stacked, range(len(candidates)), self.keep_percentile, self.drop_affinity, self.contiguous)
        return [Score(a.score, a.path_len) for a in alignments]


@dataclass(frozen=True)
class AttributeSaliency(_NamePooling):
    """Attribute-driven temporal saliency (after Kim, Kim and Lee, "Enhancing Spatio-Temporal
    Zero-shot Action Recognition with Language-driven Description Attributes"; its temporal
    branch is BIKE's "video concept spotting", Wu et al. CVPR 2023).

    S(t) = mean_j softmax_t(kappa <f_t, a_j>) over the class's attribute embeddings a_j;
    v = normalise(sum_t S(t) f_t); score = cos(v, c), or with ``augmented`` cos(v, c*),
    c* = normalise(c + mean_j a_j). The weights depend on the candidate: each candidate's
    attributes look for their own evidence. As kappa -> 0, S is uniform and this is mean-pool.

    Kept: attributes embedded on their own by the text tower; frames weighted by a
    softmax over time of their similarity to the texts (concept spotting); the
    class-level cosine. Replaced: the learned temperature by the checkpoint's kappa;
    the trained spatio-temporal interaction modules and projection heads by identities
    (frame embeddings are used as they are); the attribute extraction from LLM
    descriptions by attribute keywords the pipeline generates directly.
    """

    augmented: bool = False

    @property
    def name(self) -> str:
        return "attribute-saliency-augmented" if self.augmented else "attribute-saliency"

    def score_one(self, frames: np.ndarray, unit_frames: np.ndarray, name: np.ndarray, candidate: ClassTexts, kappa: float) -> float:
        attributes = _texts(self.name, frames, candidate, "attributes")
        video = pooling.pool(unit_frames, pooling.attribute_saliency(unit_frames, attributes, kappa))
        query = l2_normalise(name + attributes.mean(axis=0)) if self.augmented else name
        return float(video @ query)


@dataclass(frozen=True)
class Storyboard(_NamePooling):
    """Storyboard-guided pooling (after Liu et al., "Storyboard guided Alignment for
    Fine-grained Video Action Recognition", arXiv 2410.14238).

    With the class's sub-texts s_j: c' = normalise(c + sum_j softmax_j(kappa <c, s_j>) s_j);
    coarse weights softmax_t(kappa <f_t, c'>); fine weights softmax_t(kappa max_j <f_t, s_j>);
    score = cos(normalise(sum_t w_coarse f_t + sum_t w_fine f_t), c). As kappa -> 0 this is mean-pool.

    Kept: the two granularities (a global text enriched by the storyboard, and frames
    matched to its individual sub-texts), similarity-softmax attention over frames and
    over sub-texts, the final class-level cosine. Replaced by identities: the learned
    projections of texts and frames, the temporal/attention layers and the learned
    fusion of the two branches (here: the sum of the two pooled vectors); temperatures by
    the checkpoint's kappa; no training. Optional sub-text filtering (off by default,
    ``pooling.select_subtexts``): ``min_relevance`` drops sub-texts whose cosine with c is
    below it, ``max_redundancy`` drops one too similar to a more relevant one kept (the
    original selects sub-texts for relevance and diversity; its exact rule is replaced).
    """

    min_relevance: float | None = None
    max_redundancy: float | None = None

    @property
    def name(self) -> str:
        return "storyboard" if self.min_relevance is None and self.max_redundancy is None else "storyboard-filtered"

    def score_one(self, frames: np.ndarray, unit_frames: np.ndarray, name: np.ndarray, candidate: ClassTexts, kappa: float) -> float:
        subtexts = _texts(self.name, frames, candidate, "subtexts")
        if self.min_relevance is not None or self.max_redundancy is not None:
            subtexts = subtexts[pooling.select_subtexts(name, subtexts, self.min_relevance, self.max_redundancy)]
        coarse, fine = pooling.storyboard_weights(unit_frames, name, subtexts, kappa)
        return float(pooling.pool(unit_frames, coarse + fine) @ name)


@dataclass(frozen=True)
class OST(_OneOfMany):
    """Optimal-transport matching of frames and descriptors (after Chen et al., "OST: Refining
    Text Knowledge with Optimal Spatio-Temporal Descriptor for General Video Recognition", CVPR 2024).

    Entropic OT (Sinkhorn, ``epsilon`` 0.1) between the frames (mass 1/T each) and the
    class's descriptors (mass 1/M each) with cost 1 - cosine; score = sum_tj P_tj cos(f_t, d_j)
    = 1 - the transport cost. Descriptors: the sub-texts (default) or the steps (``descriptors="steps"``).

    Kept: descriptors embedded on their own, uniform marginals, Sinkhorn with cost
    1 - cosine, the plan-weighted similarity as the logit. Replaced: the learned
    adapters and the trained temperature; the original's descriptors (LLM-written
    spatio-temporal descriptors) by the storyboard sub-texts or the script's steps.
    kappa is not used.
    """

    descriptors: str = "subtexts"
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if self.descriptors not in ("subtexts", "steps") or not self.epsilon > 0:
            raise ValueError(f"OST needs descriptors 'subtexts' or 'steps' and epsilon > 0, got {self.descriptors!r} and {self.epsilon}")

    @property
    def name(self) -> str:
        return "ost" if self.descriptors == "subtexts" else "ost-steps"

    def score_video(self, video: Video, candidates: Sequence[ClassTexts]) -> list[Score]:
        _kappa(video.calibration)  # a bad calibration fails every scorer alike
        scores = []
        for candidate in candidates:
            if self.descriptors == "steps":
                descriptors = l2_normalise(check_rows(candidate.steps, f"steps of {candidate.class_id!r}", video.frames.shape[1]))
            else:
                descriptors = _texts(self.name, video.frames, candidate, "subtexts")
            scores.append(Score(pooling.transport_similarity(video.unit_frames, descriptors, self.epsilon)))
        return scores


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer as users name it: how to build it, the optional texts it needs, whether smoothing changes its scores.

    ``smoothed`` scorers are built with the run's smoothing width and their pair
    keys hash it (``actalign.stages``); the others ignore it, so a smoothing
    change leaves their stored scores valid.
    """

    name: str
    build: Callable[..., Scorer]  # smoothed: build(smoothing=...); otherwise build()
    texts: tuple[str, ...] = ()  # the optional ClassTexts fields it needs ("attributes", "subtexts")
    smoothed: bool = False


ALIGNMENT_MODES = {ActAlign(mode=mode).name: mode for mode in MODES}  # scorer name -> actalign.align mode
CALIBRATED_DROP = 0.5  # drop-dtw-calibrated: a frame no step matches with probability > 0.5 is dropped
SCORERS: dict[str, ScorerSpec] = {
    spec.name: spec
    for spec in (
        ScorerSpec("mean-pool", MeanPool),
        *(ScorerSpec(name, partial(ActAlign, mode=mode), smoothed=True) for name, mode in ALIGNMENT_MODES.items()),
        ScorerSpec("max-pool", MaxPool),
        ScorerSpec("attribute-saliency", AttributeSaliency, texts=("attributes",)),
        ScorerSpec("attribute-saliency-augmented", partial(AttributeSaliency, augmented=True), texts=("attributes",)),
        ScorerSpec("storyboard", Storyboard, texts=("subtexts",)),
        ScorerSpec("drop-dtw", DropDTW, smoothed=True),
        ScorerSpec("drop-dtw-calibrated", partial(DropDTW, drop_affinity=CALIBRATED_DROP), smoothed=True),
        ScorerSpec("ost", OST, texts=("subtexts",)),
    )
}
SCORER_NAMES = tuple(SCORERS)
DEFAULT_SCORERS = ("mean-pool", "actalign")  # the paper's baseline and method; variants on request


def smooths(name: str) -> bool:
    """True when the run's smoothing width changes this scorer's scores."""
    return SCORERS[name].smoothed


def texts_needed(names: Sequence[str]) -> set[str]:
    """The optional ClassTexts fields ("attributes", "subtexts") that these scorers need."""
    return {field for name in names for field in SCORERS[name].texts}


def make_scorer(name: str, smoothing: int = 0) -> Scorer:
    """Build a scorer by its public name; ``smoothing`` applies to the scorers that smooth (``ScorerSpec.smoothed``)."""
    spec = SCORERS.get(name)
    if spec is None:
        raise InputError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return spec.build(smoothing=smoothing) if spec.smoothed else spec.build()
