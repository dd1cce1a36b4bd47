"""Scorers against hand computations and the properties that tell them apart; the alignment math
itself is tested against brute force in test_align.py, Drop-DTW's here. Accuracy on generated
embedding proxies is in test_scorer_proxies.py."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from actalign import pooling
from actalign.align import AlignmentInputError, DropAlignment, affinity, drop_dtw_candidates, drop_dtw_many, drop_value, reference_drop_dtw
from actalign.config import RunConfig
from actalign.errors import InputError, ItemError
from actalign.scorers import (
    ALIGNMENT_MODES,
    DEFAULT_SCORERS,
    OST,
    SCORER_NAMES,
    SCORERS,
    ActAlign,
    AttributeSaliency,
    Calibration,
    ClassTexts,
    DropDTW,
    MaxPool,
    MeanPool,
    MissingTextsError,
    Storyboard,
    make_scorer,
)

CAL = Calibration(logit_scale=np.log(10.0), logit_bias=-5.0)
COLD = Calibration(logit_scale=-100.0, logit_bias=-5.0)  # kappa = exp(-100): every softmax over frames is uniform
ALIGNERS = list(ALIGNMENT_MODES)
ORDERED = [*ALIGNERS, "drop-dtw", "drop-dtw-calibrated"]
ORDER_FREE = [name for name in SCORER_NAMES if name not in ORDERED]


def one_hot(indices, dim: int = 4) -> np.ndarray:
    return np.eye(dim)[list(indices)]


def full_texts(class_id: str, steps: np.ndarray, name: np.ndarray, rng: np.random.Generator | None = None) -> ClassTexts:
    """ClassTexts with attributes and sub-texts too (random, or ones when no rng)."""
    dim = np.shape(name)[-1]
    if rng is None:
        return ClassTexts(class_id, steps, name, attributes=np.ones((3, dim)), subtexts=np.ones((2, dim)))
    return ClassTexts(class_id, steps, name, attributes=rng.normal(size=(8, dim)), subtexts=rng.normal(size=(4, dim)))


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=float)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_every_scorer_by_name():
    """Each name builds the scorer of that name; "all" runs every one; the default is the paper's baseline and method."""
    assert [make_scorer(name, smoothing=3).name for name in SCORER_NAMES] == list(SCORER_NAMES)
    assert RunConfig(videos="v", classes="c", scorers=("all",)).scorers == SCORER_NAMES
    assert DEFAULT_SCORERS == ("mean-pool", "actalign") and RunConfig(videos="v", classes="c").scorers == DEFAULT_SCORERS
    assert make_scorer("actalign-segment", smoothing=3) == ActAlign(smoothing=3, mode="segment")
    assert make_scorer("drop-dtw-calibrated") == DropDTW(drop_affinity=0.5)
    assert make_scorer("attribute-saliency-augmented") == AttributeSaliency(augmented=True)
    assert {name: make_scorer(name).mode for name in ALIGNMENT_MODES} == ALIGNMENT_MODES  # explain draws these modes
    assert Storyboard(min_relevance=0.1).name == "storyboard-filtered" and OST(descriptors="steps").name == "ost-steps"


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_a_scorer_smooths_exactly_when_its_table_entry_says(name):
    """Smoothing changes the scores of the scorers marked ``smoothed`` and no other: the pair keys hash it for those alone."""
    rng = np.random.default_rng(3)
    frames = rng.normal(size=(16, 6))
    candidates = [full_texts(str(i), rng.normal(size=(4, 6)), rng.normal(size=6), rng) for i in range(3)]
    plain, smoothed = ([s.score for s in make_scorer(name, smoothing=width).score_many(frames, candidates, CAL)] for width in (0, 5))
    assert (plain != pytest.approx(smoothed, abs=1e-9)) == SCORERS[name].smoothed


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_a_scorer_needs_exactly_the_texts_its_table_entry_names(name):
    """A candidate without a kind of optional text fails exactly the scorers that list it; a run embeds exactly those kinds."""
    frames, steps, label = np.ones((4, 3)), np.ones((2, 3)), np.ones(3)
    for field in ("attributes", "subtexts"):
        lacking = ClassTexts("axe-kick", steps, label, **{other: np.ones((2, 3)) for other in ("attributes", "subtexts") if other != field})
        try:
            make_scorer(name)(frames, lacking, CAL)
            failed = False
        except MissingTextsError:
            failed = True
        assert failed == (field in SCORERS[name].texts), field
    assert RunConfig(videos="v", classes="c", scorers=(name,)).text_kinds() == ("steps", *sorted(SCORERS[name].texts))


def test_alignment_sees_order_and_the_order_free_scorers_do_not():
    frames = one_hot([0, 0, 1, 1, 2, 2])  # event 0, then 1, then 2
    forward = full_texts("fwd", one_hot([0, 1, 2]), name=np.ones(4))
    backward = full_texts("bwd", one_hot([2, 1, 0]), name=np.ones(4))
    for name in ORDERED:
        right, wrong = make_scorer(name).score_many(frames, [forward, backward], CAL)
        assert right.score > wrong.score + 0.1, name
    for name in ORDER_FREE:
        right, wrong = make_scorer(name).score_many(frames, [forward, backward], CAL)
        assert right.score == pytest.approx(wrong.score), name


@pytest.mark.parametrize("name", ORDER_FREE)
def test_order_free_scorers_ignore_the_order_of_frames(name):
    rng = np.random.default_rng(1)
    frames, candidates = rng.normal(size=(12, 6)), [full_texts(str(i), rng.normal(size=(3, 6)), rng.normal(size=6), rng) for i in range(3)]
    scorer = make_scorer(name)
    shuffled = scorer.score_many(frames[rng.permutation(12)], candidates, CAL)
    assert [s.score for s in shuffled] == pytest.approx([s.score for s in scorer.score_many(frames, candidates, CAL)], abs=1e-12)


def test_path_lengths_per_scorer():
    frames, texts = one_hot([0, 0, 1, 1, 2, 2]), full_texts("c", one_hot([0, 1, 2]), name=np.ones(4))
    for name in ORDER_FREE:
        assert make_scorer(name)(frames, texts, CAL).path_len is None, name
    assert make_scorer("actalign")(frames, texts, CAL).path_len == 3 + 6 - 1
    assert make_scorer("actalign-segment")(frames, texts, CAL).path_len == 6
    assert 3 <= make_scorer("actalign-subsequence")(frames, texts, CAL).path_len <= 3 + 6 - 1
    assert 3 <= make_scorer("drop-dtw")(frames, texts, CAL).path_len <= 6  # matched frames


def test_call_is_score_many_of_one():
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(9, 4))
    candidates = [full_texts(str(k), rng.normal(size=(k, 4)), rng.normal(size=4), rng) for k in (1, 3, 12)]
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


def test_max_pool_is_the_cosine_of_the_element_wise_max():
    frames = np.array([[3.0, 0.0, -1.0], [0.0, 0.5, -2.0]])  # normalised: (0.949, 0, -0.316), (0, 0.243, -0.970)
    texts = ClassTexts("c", np.zeros((1, 3)), name=np.array([1.0, 1.0, 0.0]))
    top = np.maximum(unit(frames[0]), unit(frames[1]))
    assert MaxPool()(frames, texts, CAL).score == pytest.approx(top @ unit([1.0, 1.0, 0.0]) / np.linalg.norm(top))


def test_attribute_saliency_by_hand():
    rng = np.random.default_rng(2)
    frames, name, attributes = rng.normal(size=(5, 4)), rng.normal(size=4), rng.normal(size=(3, 4))
    kappa = 10.0
    f, c, a = unit(frames), unit(name), unit(attributes)
    saliency = np.zeros(5)
    for j in range(3):  # S(t) = mean_j softmax_t(kappa <f_t, a_j>)
        e = np.exp(kappa * (f @ a[j]))
        saliency += e / e.sum() / 3
    video = unit(saliency @ f)
    texts = ClassTexts("c", np.ones((1, 4)), name, attributes=attributes)
    assert AttributeSaliency()(frames, texts, CAL).score == pytest.approx(video @ c)
    assert AttributeSaliency(augmented=True)(frames, texts, CAL).score == pytest.approx(video @ unit(c + a.mean(axis=0)))


def test_storyboard_by_hand():
    rng = np.random.default_rng(3)
    frames, name, subtexts = rng.normal(size=(6, 4)), rng.normal(size=4), rng.normal(size=(3, 4))
    kappa = 10.0
    f, c, s = unit(frames), unit(name), unit(subtexts)
    alpha = np.exp(kappa * (s @ c))
    augmented = unit(c + (alpha / alpha.sum()) @ s)
    coarse = np.exp(kappa * (f @ augmented))
    fine = np.exp(kappa * np.array([max(f[t] @ s[j] for j in range(3)) for t in range(6)]))
    video = unit((coarse / coarse.sum()) @ f + (fine / fine.sum()) @ f)
    texts = ClassTexts("c", np.ones((1, 4)), name, subtexts=subtexts)
    assert Storyboard()(frames, texts, CAL).score == pytest.approx(video @ c)


@pytest.mark.parametrize("name", ["attribute-saliency", "storyboard"])
def test_saliency_and_storyboard_become_mean_pool_as_kappa_goes_to_zero(name):
    rng = np.random.default_rng(4)
    frames = rng.normal(size=(20, 8)) * rng.uniform(0.1, 10, size=(20, 1))  # norms vary: the frames are normalised first
    candidates = [full_texts(str(i), rng.normal(size=(3, 8)), rng.normal(size=8), rng) for i in range(4)]
    cold = [s.score for s in make_scorer(name).score_many(frames, candidates, COLD)]
    assert cold == pytest.approx([s.score for s in MeanPool().score_many(frames, candidates, COLD)], abs=1e-12)
    warm = [s.score for s in make_scorer(name).score_many(frames, candidates, CAL)]
    assert not np.allclose(warm, cold)


def test_attribute_saliency_spots_the_frames_its_attributes_name():
    frames = one_hot([0, 0, 0, 0, 0, 0, 0, 1])  # a long context, one brief distinctive frame
    texts = ClassTexts("c", np.ones((1, 4)), name=one_hot([1])[0], attributes=one_hot([1, 1]))
    strong = Calibration(logit_scale=np.log(50.0), logit_bias=0.0)
    assert AttributeSaliency()(frames, texts, strong).score > 0.99 > 0.2 > MeanPool()(frames, texts, strong).score


def test_storyboard_filtering_keeps_relevant_and_diverse_subtexts():
    name = unit([1.0, 0.0, 0.0])
    subtexts = unit([[0.9, 0.1, 0.0], [0.9, 0.12, 0.0], [0.1, 1.0, 0.0], [-1.0, 0.0, 0.1]])
    assert list(pooling.select_subtexts(name, subtexts, None, None)) == [0, 1, 2, 3]  # by relevance
    assert list(pooling.select_subtexts(name, subtexts, 0.0, None)) == [0, 1, 2]
    assert list(pooling.select_subtexts(name, subtexts, 0.0, 0.99)) == [0, 2]  # 1 is a near copy of 0
    assert list(pooling.select_subtexts(name, subtexts, 2.0, None)) == [0]  # never empty
    frames = np.random.default_rng(5).normal(size=(7, 3))
    texts = ClassTexts("c", np.ones((1, 3)), name, subtexts=subtexts)
    kept = ClassTexts("c", np.ones((1, 3)), name, subtexts=subtexts[[0, 2]])
    assert Storyboard(min_relevance=0.0, max_redundancy=0.99)(frames, texts, CAL).score == pytest.approx(Storyboard()(frames, kept, CAL).score)


def test_sinkhorn_has_uniform_marginals_and_tends_to_the_exact_transport():
    rng = np.random.default_rng(6)
    cost = rng.uniform(0, 2, size=(7, 3))
    plan = pooling.sinkhorn(cost, 0.1)
    assert plan.sum(axis=1) == pytest.approx(np.full(7, 1 / 7)) and plan.sum(axis=0) == pytest.approx(np.full(3, 1 / 3))
    square = rng.uniform(0, 2, size=(4, 4))  # with n = m and uniform marginals the exact plan is a permutation / n
    best = min(sum(square[i, p[i]] for i in range(4)) for p in itertools.permutations(range(4))) / 4
    assert (pooling.sinkhorn(square, 0.005) * square).sum() == pytest.approx(best, abs=5e-3)


def test_ost_is_the_transport_weighted_cosine():
    rng = np.random.default_rng(7)
    frames, subtexts, steps = rng.normal(size=(9, 5)), rng.normal(size=(4, 5)), rng.normal(size=(3, 5))
    texts = ClassTexts("c", steps, rng.normal(size=5), subtexts=subtexts)
    for scorer, descriptors in [(OST(), subtexts), (OST(descriptors="steps"), steps)]:
        cosine = unit(frames) @ unit(descriptors).T
        expected = (pooling.sinkhorn(1 - cosine, 0.1) * cosine).sum()
        assert scorer(frames, texts, CAL).score == pytest.approx(expected)
    same = ClassTexts("c", steps, np.ones(5), subtexts=unit(frames[:3]))  # descriptors equal to frames: a high score
    assert OST()(frames[:3], same, CAL).score > 0.95  # not 1: the entropic plan is blurred


@pytest.mark.parametrize("name", SCORER_NAMES)
def test_bad_embeddings_fail_the_video_with_an_item_error(name):
    scorer = make_scorer(name)
    good = full_texts("spin", np.ones((2, 3)), np.ones(3))
    with pytest.raises(AlignmentInputError, match="frames: 1 NaN") as caught:
        scorer(np.array([[1.0, np.nan, 0.0]]), good, CAL)
    assert isinstance(caught.value, ItemError)
    with pytest.raises(AlignmentInputError, match="'axe-kick'.*dimension 2 does not match"):
        scorer.score_many(np.ones((4, 3)), [good, full_texts("axe-kick", np.ones((2, 2)), np.ones(2))], CAL)


@pytest.mark.parametrize(("name", "field"), [(name, field) for name, spec in SCORERS.items() for field in spec.texts])
def test_missing_texts_fail_the_video_naming_the_class_and_the_texts(name, field):
    frames = np.ones((4, 3))
    complete = full_texts("spin", np.ones((2, 3)), np.ones(3))
    lacking = ClassTexts("axe-kick", np.ones((2, 3)), np.ones(3), **{other: np.ones((2, 3)) for other in ("attributes", "subtexts") if other != field})
    with pytest.raises(MissingTextsError, match=rf"{name!r} needs the {field} of class 'axe-kick' \(ClassTexts.{field}\)") as caught:
        make_scorer(name).score_many(frames, [complete, lacking], CAL)
    assert isinstance(caught.value, ItemError) and caught.value.error_class == "MissingTextsError"
    assert ("attribute keywords" if field == "attributes" else "storyboard sub-texts") in str(caught.value)
    with pytest.raises(AlignmentInputError, match=f"{field} of 'spin': expected a non-empty 2-D array"):
        make_scorer(name)(frames, ClassTexts("spin", np.ones((2, 3)), np.ones(3), **{field: np.ones((0, 3))}), CAL)


@pytest.mark.parametrize("name", [name for name, spec in SCORERS.items() if not spec.texts])
def test_scorers_without_optional_texts_do_not_need_them(name):
    texts = ClassTexts("c", one_hot([0, 1]), np.ones(4))  # no attributes, no sub-texts
    assert math.isfinite(make_scorer(name)(one_hot([0, 1, 1]), texts, CAL).score)


def test_bad_calibration_fails_every_scorer_that_uses_it():
    texts = full_texts("c", np.ones((2, 3)), np.ones(3))
    for name in [n for n in SCORER_NAMES if n not in ("mean-pool", "max-pool")]:
        with pytest.raises(AlignmentInputError, match="calibration must be finite"):
            make_scorer(name)(np.ones((4, 3)), texts, Calibration(float("nan"), 0.0))


def test_bad_scorer_settings():
    with pytest.raises(InputError, match="unknown scorer 'best'"):
        make_scorer("best")
    with pytest.raises(ValueError, match="mode in"):
        ActAlign(mode="best")
    with pytest.raises(ValueError, match="smoothing >= 0"):
        make_scorer("actalign", smoothing=-1)
    with pytest.raises(ValueError, match="keep_percentile in"):
        DropDTW(keep_percentile=120)
    with pytest.raises(ValueError, match="smoothing >= 0"):
        make_scorer("drop-dtw", smoothing=-1)
    with pytest.raises(ValueError, match="drop_affinity is an affinity"):
        DropDTW(drop_affinity=2.0)
    with pytest.raises(ValueError, match="descriptors"):
        OST(descriptors="captions")
    with pytest.raises(ValueError, match="epsilon > 0"):
        OST(epsilon=0.0)


# ---- Drop-DTW: the reference, the compiled kernel and brute force ----


def labellings(k: int, t: int, contiguous: bool):
    """Every admissible assignment of t frames to a step (0..k-1) or -1 (dropped)."""
    for labels in itertools.product(range(-1, k), repeat=t):
        matched = [label for label in labels if label >= 0]
        if matched != sorted(matched) or set(matched) != set(range(k)):
            continue  # steps in order, each at least one frame
        runs = [[i for i, label in enumerate(labels) if label == step] for step in range(k)]
        if contiguous and any(r[-1] - r[0] + 1 != len(r) for r in runs):
            continue  # a step's frames form one run
        yield labels


def labelling_value(a: np.ndarray, labels, drop: float) -> float:
    return sum(a[label, t] if label >= 0 else drop for t, label in enumerate(labels)) / len(labels)


def drop_matrices(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, 6), (3, 3), (2, 7), (4, 9), (12, 40), *((k, k + d) for k, d in zip(rng.integers(1, 6, 30), rng.integers(0, 6, 30)))]
    matrices = [rng.uniform(0.001, 0.999, shape) for shape in shapes]
    matrices += [np.full(shape, 0.5) for shape in [(1, 1), (3, 5), (4, 4)]]  # everything ties
    matrices += [rng.integers(0, 3, shape) / 2 for shape in [(3, 6), (2, 5), (4, 8)]]  # few distinct values, zeros
    return matrices


@pytest.mark.parametrize("contiguous", [True, False])
def test_drop_dtw_fast_and_reference_agree_exactly(contiguous):
    matrices = drop_matrices(seed=int(contiguous))
    drops = [drop_value(m) for m in matrices]
    for matrix, drop, fast in zip(matrices, drops, drop_dtw_many(matrices, contiguous=contiguous), strict=True):
        slow = reference_drop_dtw(matrix, drop, contiguous)
        assert fast.drop == slow.drop == drop
        assert fast.score == slow.score, matrix.shape
        assert np.array_equal(fast.path, slow.path), (matrix.shape, fast.path, slow.path)


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize(("k", "t"), [(k, t) for k in range(1, 4) for t in range(k, 7)])
def test_drop_dtw_finds_the_best_labelling(k, t, contiguous):
    rng = np.random.default_rng(10 * k + t)
    for a in [rng.uniform(size=(k, t)), rng.integers(0, 3, (k, t)) / 2]:
        for drop in (drop_value(a), 0.0, 0.6):
            best = max(labelling_value(a, labels, drop) for labels in labellings(k, t, contiguous))
            fast = drop_dtw_many([a], drops=[drop], contiguous=contiguous)[0]
            assert fast.score == pytest.approx(best, abs=1e-12)
            # the path is an admissible labelling that attains the score
            labels = [-1] * t
            for step, frame in fast.path:
                assert labels[frame] == -1
                labels[frame] = int(step)
            assert tuple(labels) in set(labellings(k, t, contiguous))
            assert labelling_value(a, labels, drop) == pytest.approx(fast.score, abs=1e-12)
            assert fast.dropped == t - len(fast.path)


def test_drop_dtw_drops_what_matches_nothing_and_keeps_script_lengths_fair():
    a = np.array([[0.0, 0.9, 0.8, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.9, 0.0, 0.0]])  # background, step 0, step 0, step 1, background
    result = drop_dtw_many([a], drops=[0.1])[0]
    assert result.path.tolist() == [[0, 1], [0, 2], [1, 3]] and result.dropped == 3
    assert result.score == pytest.approx((0.9 + 0.8 + 0.9 + 3 * 0.1) / 6)
    one_step, three_steps = np.full((1, 3), 0.9), np.full((3, 3), 0.9)  # a longer script that matches as well scores the same
    assert drop_dtw_many([one_step], drops=[0.1])[0].score == drop_dtw_many([three_steps], drops=[0.1])[0].score == pytest.approx(0.9)


def test_drop_dtw_contiguous_forbids_drops_inside_a_step():
    a = np.array([[0.9, 0.0, 0.9]])
    assert drop_dtw_many([a], drops=[0.5], contiguous=False)[0].path.tolist() == [[0, 0], [0, 2]]
    assert drop_dtw_many([a], drops=[0.5], contiguous=True)[0].score == pytest.approx((0.9 + 0.5 + 0.5) / 3)


def test_drop_value_is_the_percentile_of_the_affinities():
    a = np.arange(1, 101, dtype=float).reshape(4, 25) / 100
    assert drop_value(a, 30) == pytest.approx(np.percentile(a, 70))  # exceeded by 30 % of the cells
    assert drop_value(a, 100) == pytest.approx(0.01) and drop_value(a, 0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="keep_percentile"):
        drop_value(a, -1)


def test_drop_dtw_with_fewer_frames_than_steps_uses_the_segment_rule():
    a = np.array([[0.9], [0.2], [0.4]])
    fast, slow = drop_dtw_many([a])[0], reference_drop_dtw(a, 0.3)
    assert fast.score == slow.score == pytest.approx(0.5) and fast.path.tolist() == [[0, 0], [1, 0], [2, 0]]
    assert isinstance(fast, DropAlignment) and fast.dropped == 0


def test_drop_dtw_scorer_is_drop_dtw_of_the_affinities():
    rng = np.random.default_rng(8)
    frames, steps = rng.normal(size=(10, 4)), [rng.normal(size=(k, 4)) for k in (2, 5)]
    scorer = DropDTW(keep_percentile=40, contiguous=False)
    scores = scorer.score_many(frames, [ClassTexts(str(i), s, np.ones(4)) for i, s in enumerate(steps)], CAL)
    expected = drop_dtw_candidates(frames, steps, logit_scale=CAL.logit_scale, logit_bias=CAL.logit_bias, keep_percentile=40, contiguous=False)
    assert [s.score for s in scores] == [e.score for e in expected] and [s.path_len for s in scores] == [e.path_len for e in expected]
    calibrated = make_scorer("drop-dtw-calibrated").score_many(frames, [ClassTexts("0", steps[0], np.ones(4))], CAL)[0]
    fixed = drop_dtw_candidates(frames, steps[:1], logit_scale=CAL.logit_scale, logit_bias=CAL.logit_bias, drop_affinity=0.5)[0]
    assert calibrated.score == fixed.score and fixed.drop == 0.5


def test_drop_dtw_rejects_bad_drop_values():
    with pytest.raises(AlignmentInputError, match="drops: expected 1 finite"):
        drop_dtw_many([np.ones((2, 3))], drops=[np.nan])
    with pytest.raises(AlignmentInputError, match="affinity matrix 0: 1 NaN"):
        drop_dtw_many([np.array([[np.nan, 1.0]])])


# ---- the score stage over a real store ----


def stored_shard(root, rng: np.random.Generator):
    """A workdir holding two videos' frames and three classes' texts, and what ``score_videos`` needs to score them."""
    from actalign.manifest import VideoSpec
    from actalign.registry import ModelIdentity
    from actalign.storage.embeddings import write_frame_embeddings, write_text_embeddings
    from actalign.storage.workdir import Workdir

    workdir = Workdir.open(root)
    model = ModelIdentity("m", "m", None, "f" * 16, False, None, "float32", (16, 16), float(np.log(10.0)), -5.0)
    classes = ("a", "b", "c")
    for c in classes:
        steps, name = rng.standard_normal((3, 8)), rng.standard_normal((1, 8))
        texts = [("step", i, f"{c} step {i}") for i in range(3)] + [("name", 0, c)]
        write_text_embeddings(workdir.step_embeddings_path(f"text-{c}"), class_id=c, texts=texts, embeddings=np.vstack([steps, name]), model="m", embed_key=f"text-{c}")
    videos = [VideoSpec(v, f"/nowhere/{v}.mp4", None, None, None, classes, "a") for v in ("v1", "v2")]
    for v in videos:
        frames = rng.standard_normal((7, 8)).astype(np.float32)
        write_frame_embeddings(workdir.frames_path(f"frames-{v.video_id}"), video_id=v.video_id, times_s=np.arange(7.0), embeddings=frames, model="m", frames_key=f"frames-{v.video_id}", fps=1.0)
    frames_keys = {v.video_id: f"frames-{v.video_id}" for v in videos}
    embed_keys = {v.video_id: {c: {"steps": f"text-{c}"} for c in classes} for v in videos}
    return workdir, videos, frames_keys, embed_keys, model


def test_the_score_stage_says_skipped_for_a_video_whose_pairs_were_all_reused(tmp_path):
    """Reuse has one word in every stage: a re-run's score rows say ``skipped`` where nothing was computed, ``ok`` where something was."""
    import pyarrow.parquet as pq

    from actalign.tasks.score import score_videos

    workdir, videos, frames_keys, embed_keys, model = stored_shard(tmp_path / "work", np.random.default_rng(3))
    config = RunConfig(videos="v.csv", classes="c.yaml", workdir=tmp_path / "work", scorers=("mean-pool", "actalign"))

    def states(run_id: str) -> dict[str, tuple[str, str | None]]:
        rows = pq.read_table(workdir.status_path(run_id, "score", "00000")).to_pylist()
        return {row["item"]: (row["state"], row["key"]) for row in rows}

    first = score_videos(workdir, "run-1", "00000", videos, frames_keys, embed_keys, model, config)
    assert (first.scored_pairs, first.reused_pairs) == (12, 0)
    assert states("run-1") == {"v1": ("ok", None), "v2": ("ok", None)}
    again = score_videos(workdir, "run-2", "00000", videos, frames_keys, embed_keys, model, config)
    assert (again.scored_pairs, again.reused_pairs) == (0, 12)
    assert states("run-2") == {"v1": ("skipped", "frames-v1"), "v2": ("skipped", "frames-v2")}
    more = config.model_copy(update={"scorers": ("mean-pool", "actalign", "actalign-segment")})
    partly = score_videos(workdir, "run-3", "00000", videos[:1], frames_keys, embed_keys, model, more)
    assert (partly.scored_pairs, partly.reused_pairs) == (3, 6)
    assert states("run-3") == {"v1": ("ok", None)}  # one new scorer's pairs were computed


def test_scorers_of_one_video_share_its_checks_and_affinities_and_score_as_alone():
    """A ``Video`` computes each candidate list's affinities once per smoothing width; every scorer scores through it
    exactly as through ``score_many``, for any list of candidates (the score stage asks each for the ones it lacks)."""
    from actalign.scorers import Video

    rng = np.random.default_rng(11)
    frames = rng.normal(size=(9, 6)).astype(np.float32)
    candidates = [full_texts(str(i), rng.normal(size=(k, 6)).astype(np.float32), rng.normal(size=6), rng) for i, k in enumerate((2, 3, 4))]
    video = Video(frames, CAL)
    for name in SCORER_NAMES:
        scorer = make_scorer(name, smoothing=2)
        for chosen in (candidates, candidates[1:], candidates[:1]):
            assert scorer.score_video(video, chosen) == scorer.score_many(frames, chosen, CAL)
    assert video.affinities(candidates, 2) is video.affinities(list(candidates), 2)
    assert video.affinities(candidates, 2) is not video.affinities(candidates, 0)
    expected = affinity(frames, candidates[1].steps, logit_scale=CAL.logit_scale, logit_bias=CAL.logit_bias)
    np.testing.assert_allclose(video.affinities(candidates, 0).block(1), expected, rtol=1e-6)


def test_a_videos_scores_do_not_depend_on_which_scorer_asks_first():
    """Every scorer of a video scores the same, bit for bit, whichever scorer computes its affinities."""
    from actalign.scorers import Video

    rng = np.random.default_rng(12)
    frames = rng.normal(size=(40, 6)).astype(np.float32)
    candidates = [full_texts(str(i), rng.normal(size=(k, 6)).astype(np.float32), rng.normal(size=6), rng) for i, k in enumerate((5, 2, 7))]
    calibration = Calibration(logit_scale=math.log(117.3), logit_bias=-12.9)
    names = [*ORDERED, *reversed(ORDERED)]
    first, second = Video(frames, calibration), Video(frames, calibration)
    forward = {name: make_scorer(name, smoothing=3).score_video(first, candidates) for name in names[: len(ORDERED)]}
    backward = {name: make_scorer(name, smoothing=3).score_video(second, candidates) for name in names[len(ORDERED) :]}
    assert forward == backward
    assert np.array_equal(first.affinities(candidates, 3).matrix, second.affinities(candidates, 3).matrix)
