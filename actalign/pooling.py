"""Order-free scoring math: pooling of a video's frames into one embedding, and transport plans.

The scorers in ``actalign.scorers`` wrap these functions. Every function here takes
L2-normalised rows (frames F: T x d, texts: n x d) and ``kappa = exp(logit_scale)``
of the checkpoint that made the embeddings, the same inverse temperature the
checkpoint's own logits use, so its softmaxes over frames are as sharp as the
model's own similarity scale says.

- ``attribute_saliency``: S(t) = mean_j softmax_t(kappa <f_t, a_j>), the temporal
  weights of "video concept spotting" (BIKE) driven by attribute keywords (Kim, Kim
  and Lee). As kappa -> 0 every softmax is uniform: S(t) = 1/T, the mean-pool.
- ``storyboard_weights``: the coarse and fine frame weights of storyboard-guided
  alignment (Liu et al.): coarse from the class text augmented by its sub-texts,
  fine from each frame's best sub-text.
- ``select_subtexts``: optional filtering of sub-texts by relevance to the class
  text and by redundancy among themselves.
- ``sinkhorn`` and ``transport_similarity``: entropic optimal transport between
  frames and descriptors (OST), uniform marginals, cost 1 - cosine.

None of this looks at the order of frames or texts: shuffling the frames changes no score.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the maximum (no overflow for any finite logits)."""
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def pool(frames: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_t w_t f_t, L2-normalised (a zero vector stays zero)."""
    video = weights @ frames
    norm = np.sqrt(video @ video)
    return video / norm if norm > 0 else video


def attribute_saliency(frames: np.ndarray, attributes: np.ndarray, kappa: float) -> np.ndarray:
    """S(t) = mean_j softmax_t(kappa <f_t, a_j>) (T,): each attribute spots its frames, the weights average them."""
    return softmax(kappa * (attributes @ frames.T), axis=1).mean(axis=0)


def storyboard_weights(frames: np.ndarray, name: np.ndarray, subtexts: np.ndarray, kappa: float) -> tuple[np.ndarray, np.ndarray]:
    """(coarse, fine) frame weights (T,) each.

    c' = normalise(c + sum_j softmax_j(kappa <c, s_j>) s_j): the class text augmented by its
    sub-texts, those closest to it weighing most; coarse = softmax_t(kappa <f_t, c'>);
    fine = softmax_t(kappa max_j <f_t, s_j>): frames that match any one moment of the storyboard.
    """
    mixture = softmax(kappa * (subtexts @ name)) @ subtexts
    augmented = name + mixture
    augmented = augmented / np.sqrt(augmented @ augmented)
    coarse = softmax(kappa * (frames @ augmented))
    fine = softmax(kappa * (frames @ subtexts.T).max(axis=1))
    return coarse, fine


def select_subtexts(name: np.ndarray, subtexts: np.ndarray, min_relevance: float | None, max_redundancy: float | None) -> np.ndarray:
    """Indices of the sub-texts kept, most relevant (cosine with the class text) first.

    ``min_relevance``: drop sub-texts whose cosine with the class text is below it.
    ``max_redundancy``: going down by relevance, drop a sub-text whose cosine with one
    already kept is above it (keeps the storyboard diverse). The most relevant
    sub-text is always kept, so the result is never empty. None disables a filter.
    """
    relevance = subtexts @ name
    order = np.argsort(-relevance, kind="stable")
    kept = [int(order[0])]
    for j in order[1:]:
        if min_relevance is not None and relevance[j] < min_relevance:
            continue
        if max_redundancy is not None and (subtexts[kept] @ subtexts[j]).max() > max_redundancy:
            continue
        kept.append(int(j))
    return np.array(kept, dtype=np.int64)


def sinkhorn(cost: np.ndarray, epsilon: float, iterations: int = 2000, tolerance: float = 1e-9) -> np.ndarray:
    """The entropic optimal transport plan (n x m) between uniform marginals 1/n and 1/m.

    Sinkhorn's scaling iterations on the kernel exp(-(cost - min cost) / epsilon),
    until the row sums are within ``tolerance`` (relative) of 1/n (the column sums
    are exact after each iteration) or after ``iterations``. Shifting the cost by its
    minimum leaves the plan unchanged and keeps the kernel's largest entry at 1; a
    kernel entry below the smallest float (cost spread > ~700 epsilon) is 0, which
    for cosine costs (spread <= 2) needs epsilon < 0.003.
    """
    n, m = cost.shape
    kernel = np.exp(-(cost - cost.min()) / epsilon)
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    u, v = np.ones(n), np.ones(m)
    for i in range(iterations):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
        if i % 10 == 9 and np.abs(u * (kernel @ v) * n - 1.0).max() < tolerance:
            break
    return u[:, None] * kernel * v[None, :]


def transport_similarity(frames: np.ndarray, descriptors: np.ndarray, epsilon: float) -> float:
    """sum_tj P_tj <f_t, d_j> for the Sinkhorn plan P of cost 1 - <f_t, d_j>: 1 - the transport cost."""
    cosine = frames @ descriptors.T
    return float((sinkhorn(1.0 - cosine, epsilon) * cosine).sum())
