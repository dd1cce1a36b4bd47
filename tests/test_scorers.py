"""Scorers against hand computations and the properties that tell them apart; the alignment math
itself is tested against brute force in test_align.py."""

from __future__ import annotations

import numpy as np
import pytest

from actalign.align import AlignmentInputError
from actalign.errors import InputError, ItemError
from actalign.scorers import ALIGNMENT_MODES, SCORER_NAMES, ActAlign, Calibration, ClassTexts, MeanPool, make_scorer

CAL = Calibration(logit_scale=np.log(10.0), logit_bias=-5.0)
ALIGNERS = list(ALIGNMENT_MODES)


def one_hot(indices, dim: int = 4) -> np.ndarray:
    return np.eye(dim)[list(indices)]


def test_every_scorer_by_name():
    assert SCORER_NAMES == ("mean-pool", "actalign", "actalign-subsequence", "actalign-segment")
    assert [make_scorer(name, smoothing=3).name for name in SCORER_NAMES] == list(SCORER_NAMES)
    assert make_scorer("actalign-segment", smoothing=3) == ActAlign(smoothing=3, mode="segment")
    assert ALIGNMENT_MODES == {"actalign": "global", "actalign-subsequence": "subsequence", "actalign-segment": "segment"}


def test_alignment_sees_order_and_mean_pool_does_not():
    frames = one_hot([0, 0, 1, 1, 2, 2])  # event 0, then 1, then 2
    forward = ClassTexts("fwd", one_hot([0, 1, 2]), name=np.ones(4))
    backward = ClassTexts("bwd", one_hot([2, 1, 0]), name=np.ones(4))
    for name in ALIGNERS:
        right, wrong = make_scorer(name).score_many(frames, [forward, backward], CAL)
        assert right.score > wrong.score + 0.1, name
    right, wrong = MeanPool().score_many(frames, [forward, backward], CAL)
    assert right.score == pytest.approx(wrong.score)


def test_path_lengths_per_scorer():
    frames, texts = one_hot([0, 0, 1, 1, 2, 2]), ClassTexts("c", one_hot([0, 1, 2]), name=np.ones(4))
    assert MeanPool()(frames, texts, CAL).path_len is None
    assert make_scorer("actalign")(frames, texts, CAL).path_len == 3 + 6 - 1
    assert make_scorer("actalign-segment")(frames, texts, CAL).path_len == 6
    assert 3 <= make_scorer("actalign-subsequence")(frames, texts, CAL).path_len <= 3 + 6 - 1


def test_call_is_score_many_of_one():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(9, 4))
    candidates = [ClassTexts(str(k), rng.normal(size=(k, 4)), rng.normal(size=4)) for k in (1, 3, 12)]
    for name in SCORER_NAMES:
        scorer = make_scorer(name, smoothing=2)
        together, alone = scorer.score_many(frames, candidates, CAL), [scorer(frames, c, CAL) for c in candidates]
        assert [s.score for s in together] == pytest.approx([s.score for s in alone], abs=1e-15)
        assert [s.path_len for s in together] == [s.path_len for s in alone]
        assert scorer.score_many(frames, [], CAL) == []


def test_mean_pool_is_the_cosine_of_the_mean_normalised_frame():
    frames = np.array([[3.0, 0.0], [0.0, 0.5]])
    texts = ClassTexts("c", np.zeros((1, 2)), name=np.array([2.0, 0.0]))
    assert MeanPool()(frames, texts, CAL).score == pytest.approx(1 / np.sqrt(2))


def test_mean_pool_normalises_each_name_on_its_own():
    frames = np.array([[1.0, 1.0]])
    short, long = ClassTexts("a", np.zeros((1, 2)), np.array([1.0, 0.0])), ClassTexts("b", np.zeros((1, 2)), np.array([0.0, 50.0]))
    assert [s.score for s in MeanPool().score_many(frames, [short, long], CAL)] == pytest.approx([1 / np.sqrt(2)] * 2)


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_bad_embeddings_fail_the_video_with_an_item_error(name):
    scorer = make_scorer(name)
    good = ClassTexts("spin", np.ones((2, 3)), np.ones(3))
    with pytest.raises(AlignmentInputError, match="frames: 1 NaN") as caught:
        scorer(np.array([[1.0, np.nan, 0.0]]), good, CAL)
    assert isinstance(caught.value, ItemError)
    with pytest.raises(AlignmentInputError, match="'axe-kick'.*dimension 2 does not match"):
        scorer.score_many(np.ones((4, 3)), [good, ClassTexts("axe-kick", np.ones((2, 2)), np.ones(2))], CAL)


def test_bad_scorer_settings():
    with pytest.raises(InputError, match="unknown scorer 'best'"):
        make_scorer("best")
    with pytest.raises(ValueError, match="mode in"):
        ActAlign(mode="best")
    with pytest.raises(ValueError, match="smoothing >= 0"):
        make_scorer("actalign", smoothing=-1)
