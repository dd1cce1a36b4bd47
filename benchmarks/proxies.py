"""Generated embedding proxies for the scorers: videos with candidate classes, no model needed.

Concepts are random unit vectors in d = 64. A video's frames show concepts; each
frame embedding is its concept plus one nuisance vector shared by all frames of
the video (scene, camera, appearance: real frame embeddings of one video are
highly similar) plus noise of its own. Every text about a concept (step,
attribute, sub-text, name) is the concept plus its own noise. Everything is
L2-normalised. With these noise levels a frame and a text of the same concept
have a cosine of about 0.5, of different concepts about 0 +- 0.13, and two frames
of one video about 0.5. ``CALIBRATION`` plays the checkpoint's: kappa = 20 and
bias -6, so a matching frame-text pair gets an affinity of about 0.98 (median)
and an unrelated pair about 0.003 (SigLIP so400m: kappa 117 on cosines several times
smaller, so kappa times the cosine gap is of the same order).

Proxies (``PROXIES``), each a list of ``Trial``: one video, its candidates, the true index.

- ``order-only``: every candidate is an order of the same K = 4 concepts (5
  distinct orders of the 24); the video shows the true order, 32 frames in runs of
  >= 3. Names, attributes and sub-texts are about the same concepts for every
  class (each with its own noise), so only the order tells the classes apart.
- ``brief-action``: 5 classes share a long context (an approach concept, then a
  recovery concept, 29 of 32 frames) and differ by a distinctive concept shown in
  3 frames. A class's name is about the context and its distinctive concept; its
  steps are approach, moment, recovery; 5 of its 8 attributes and 2 of its 4
  sub-texts are about the moment, the others about the context.
- ``background``: ``order-only`` with 24 background frames before and 24 after
  the 32 action frames, showing an unrelated random scene. Unrelated is not
  orthogonal: in d = 64 a random scene has a cosine of about +-0.12 with each
  step's concept, and with the shared nuisance some step texts reach affinities
  of 0.3-0.7 on every background frame, as generic texts ("the athlete stands
  ready") do on real footage before and after an action.

Everything is drawn from one ``numpy.random.Generator``: a seed fixes a proxy set.

Families (``FAMILY_RANGES``, ``in_family_range``): real models squeeze these cosines
into their own range. ``in_family_range`` maps every cosine c between a frame and a
text to gain * c + offset (exactly: two extra dimensions carry a frame and a text
"modality" direction): SigLIP-like, a matching pair about 0.15 and an unrelated one
about 0 +- 0.04 (so400m's kappa 117 and bias -12.9 then give the same affinities as
``CALIBRATION`` does here); CLIP-like, a matching pair about 0.30 and an unrelated one
about 0.15 +- 0.04 (the modality gap: every image-text cosine of CLIP is positive),
kappa 100 and no bias. Which calibration (``actalign.calibration``) keeps the
alignment scorers' accuracy on each is measured in ``tests/test_scorer_proxies.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from actalign import calibration as calibrations
from actalign.scorers import Calibration, ClassTexts, Scorer, make_scorer

DIM = 64
VIDEO_NOISE, FRAME_NOISE, TEXT_NOISE = 1.0, 0.7, 0.75  # noise norms relative to the unit concept
CALIBRATION = Calibration(logit_scale=float(np.log(20.0)), logit_bias=-6.0)
CANDIDATES, STEPS, ACTION_FRAMES, MIN_RUN = 5, 4, 32, 3
ATTRIBUTES, SUBTEXTS = 8, 4
MOMENT_FRAMES, MOMENT_ATTRIBUTES, MOMENT_SUBTEXTS = 3, 5, 2
BACKGROUND_FRAMES = 24
PROXIES = ("order-only", "brief-action", "background")


@dataclass(frozen=True)
class Trial:
    """One video (T x d frame embeddings), its candidates, and the index of the true one."""

    frames: np.ndarray
    candidates: list[ClassTexts]
    label: int


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def noisy(concepts: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Each row: its concept plus noise of norm about ``noise``, normalised."""
    concepts = np.atleast_2d(concepts)
    return unit(concepts + noise * rng.standard_normal(concepts.shape) / np.sqrt(concepts.shape[-1]))


def film(shown: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frame embeddings of a video showing these concepts (T x d): one nuisance shared by all its frames, plus noise per frame."""
    nuisance = VIDEO_NOISE * rng.standard_normal(shown.shape[-1]) / np.sqrt(shown.shape[-1])
    return noisy(shown + nuisance, FRAME_NOISE, rng)


def runs(total: int, count: int, rng: np.random.Generator, shortest: int = MIN_RUN) -> np.ndarray:
    """Random lengths of ``count`` runs of >= ``shortest`` frames adding up to ``total``."""
    cuts = np.sort(rng.choice(total - count * shortest + count - 1, count - 1, replace=False))
    lengths = np.diff(np.concatenate(([-1], cuts, [total - count * shortest + count - 1]))) - 1
    return lengths + shortest


def texts_about(class_id: str, steps: np.ndarray, name: np.ndarray, attributes: np.ndarray, subtexts: np.ndarray, rng) -> ClassTexts:
    """A class's texts: each row a noisy copy of the concept it is about."""
    return ClassTexts(
        class_id,
        steps=noisy(steps, TEXT_NOISE, rng),
        name=noisy(name, TEXT_NOISE, rng)[0],
        attributes=noisy(attributes, TEXT_NOISE, rng),
        subtexts=noisy(subtexts, TEXT_NOISE, rng),
    )


def order_only(rng: np.random.Generator, background: bool = False) -> Trial:
    concepts = unit(rng.standard_normal((STEPS, DIM)))
    orders = [list(p) for p in itertools.permutations(range(STEPS))]
    chosen = [orders[i] for i in rng.choice(len(orders), CANDIDATES, replace=False)]
    label = int(rng.integers(CANDIDATES))
    shown = np.repeat(concepts[chosen[label]], runs(ACTION_FRAMES, STEPS, rng), axis=0)
    frames = film(shown, rng)
    if background:
        scene = unit(rng.standard_normal(DIM))  # unrelated to the action, but never exactly orthogonal to its texts
        frames = film(np.concatenate([np.tile(scene, (BACKGROUND_FRAMES, 1)), shown, np.tile(scene, (BACKGROUND_FRAMES, 1))]), rng)
    gist = unit(concepts.sum(axis=0))  # every name is about all the concepts
    candidates = [
        texts_about(
            f"order-{''.join(map(str, order))}",
            concepts[order],
            gist,
            concepts[np.arange(ATTRIBUTES) % STEPS],
            concepts[order][:SUBTEXTS],
            rng,
        )
        for order in chosen
    ]
    return Trial(frames, candidates, label)


def brief_action(rng: np.random.Generator) -> Trial:
    approach, recovery, *moments = unit(rng.standard_normal((2 + CANDIDATES, DIM)))
    label = int(rng.integers(CANDIDATES))
    before = int(rng.integers(MIN_RUN, ACTION_FRAMES - MOMENT_FRAMES - MIN_RUN + 1))
    shown = [approach] * before + [moments[label]] * MOMENT_FRAMES + [recovery] * (ACTION_FRAMES - MOMENT_FRAMES - before)
    frames = film(np.array(shown), rng)
    context = unit(approach + recovery)
    candidates = []
    for i, moment in enumerate(moments):
        attributes = [moment] * MOMENT_ATTRIBUTES + [approach, recovery] * ATTRIBUTES
        subtexts = [approach, *[moment] * MOMENT_SUBTEXTS, recovery]
        candidates.append(
            texts_about(
                f"action-{i}",
                np.array([approach, moment, recovery]),
                unit(context + moment),
                np.array(attributes[:ATTRIBUTES]),
                np.array(subtexts[:SUBTEXTS]),
                rng,
            )
        )
    return Trial(frames, candidates, label)


def make_trials(proxy: str, count: int, seed: int) -> list[Trial]:
    """``count`` trials of one proxy, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    if proxy == "order-only":
        return [order_only(rng) for _ in range(count)]
    if proxy == "brief-action":
        return [brief_action(rng) for _ in range(count)]
    if proxy == "background":
        return [order_only(rng, background=True) for _ in range(count)]
    raise ValueError(f"unknown proxy {proxy!r}; choose from {PROXIES}")


def accuracy(scorer: Scorer, trials: Sequence[Trial], calibration: Calibration = CALIBRATION) -> float:
    """Top-1 accuracy; a tie with the true candidate counts against it (as the pipeline's rank does)."""
    wins = 0
    for trial in trials:
        scores = [s.score for s in scorer.score_many(trial.frames, trial.candidates, calibration)]
        wins += all(scores[trial.label] > s for i, s in enumerate(scores) if i != trial.label)
    return wins / len(trials)


@dataclass(frozen=True)
class FamilyRange:
    """How a model family's cosines relate to the proxies' (gain * c + offset), and its checkpoint's logits."""

    gain: float
    offset: float
    logit_scale: float
    logit_bias: float | None  # None: softmax-trained, no bias


FAMILY_RANGES = {
    "siglip": FamilyRange(0.3, 0.0, float(np.log(117.3)), -12.9),  # about so400m's own values
    "clip": FamilyRange(0.3, 0.15, float(np.log(100.0)), None),  # CLIP's temperature ends at its cap, 100
}


def in_family_range(trials: Sequence[Trial], family: str) -> list[Trial]:
    """The trials with every frame-text cosine c mapped to gain * c + offset (``FAMILY_RANGES``), all rows still unit."""
    spec = FAMILY_RANGES[family]
    rest = np.sqrt(1.0 - spec.gain)
    gap = spec.offset / (1.0 - spec.gain)  # the cosine of the two modality directions
    frame_side, text_side = np.array([1.0, 0.0]), np.array([gap, np.sqrt(1.0 - gap**2)])

    def lift(rows: np.ndarray | None, side: np.ndarray) -> np.ndarray | None:
        if rows is None:
            return None
        rows = np.atleast_2d(rows)
        return np.concatenate([np.sqrt(spec.gain) * unit(rows), np.tile(rest * side, (len(rows), 1))], axis=1)

    def texts(c: ClassTexts) -> ClassTexts:
        return replace(c, steps=lift(c.steps, text_side), name=lift(c.name, text_side)[0], attributes=lift(c.attributes, text_side), subtexts=lift(c.subtexts, text_side))

    return [Trial(lift(t.frames, frame_side), [texts(c) for c in t.candidates], t.label) for t in trials]


def family_calibration(family: str, choice: str) -> Calibration:
    """The affinity's calibration that ``choice`` makes of the family's checkpoint (``actalign.calibration.effective``)."""
    spec = FAMILY_RANGES[family]
    return Calibration(*calibrations.effective(choice, family, spec.logit_scale, spec.logit_bias))


CALIBRATION_ROWS = (("siglip", "sigmoid"), ("siglip", "cosine"), ("clip", "midpoint"), ("clip", "cosine"))
MIDPOINT_SWEEP = (0.2, 0.25, 0.3)  # CLIP-like: how far the midpoint may be off


def calibration_table(trials: int = 400, seed: int = 0, scorer: str = "actalign") -> list[tuple[str, dict[str, float]]]:
    """``scorer``'s top-1 accuracy per proxy, for each (family, calibration) and for CLIP-like midpoints (docs/models.md)."""
    drawn = {proxy: make_trials(proxy, trials, seed=seed + i) for i, proxy in enumerate(PROXIES)}
    ranged = {family: {proxy: in_family_range(drawn[proxy], family) for proxy in PROXIES} for family in FAMILY_RANGES}
    cases = [(f"{family}-like, {choice}", family, family_calibration(family, choice)) for family, choice in CALIBRATION_ROWS]
    kappa = float(np.exp(FAMILY_RANGES["clip"].logit_scale))
    cases += [(f"clip-like, sigmoid centred at {m}", "clip", Calibration(FAMILY_RANGES["clip"].logit_scale, -kappa * m)) for m in MIDPOINT_SWEEP]
    return [(label, {proxy: accuracy(make_scorer(scorer), ranged[family][proxy], cal) for proxy in PROXIES}) for label, family, cal in cases]


if __name__ == "__main__":  # python -m benchmarks.proxies: the calibration table of docs/models.md
    for label, row in calibration_table():
        print(f"{label:40s}", "  ".join(f"{proxy} {value:.3f}" for proxy, value in row.items()))
