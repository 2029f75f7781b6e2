"""Small statistics shared by the evaluations."""

from __future__ import annotations

import math

import numpy as np

from ..errors import WmkitError


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis of ``(B, S)`` values, ties sharing their average rank."""
    ranks = np.empty_like(x, dtype=np.float64)
    for i in range(len(x)):
        _, inverse, counts = np.unique(x[i], return_inverse=True, return_counts=True)
        mean_rank = np.cumsum(counts) - (counts - 1) / 2.0 - 1.0  # average 0-based rank of each distinct value
        ranks[i] = mean_rank[inverse]
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of the rank correlation of ``(B, S)`` scores (ties share their average rank);
    rows without spread are left out."""
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    ok = (den > 0) & (np.ptp(a, 1) > 0) & (np.ptp(b, 1) > 0)
    return float(((ra * rb).sum(1)[ok] / den[ok]).mean()) if ok.any() else float("nan")


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% (by default) Wilson score interval for a success rate; sensible at 0% and 100%, unlike
    the normal approximation (Wilson 1927)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def pairwise_accuracy(possible: np.ndarray, impossible: np.ndarray) -> float:
    """Share of comparisons in which the possible side is the less surprising; ties count one half."""
    possible, impossible = np.asarray(possible, float), np.asarray(impossible, float)
    if possible.shape != impossible.shape or possible.size == 0:
        raise WmkitError(f"pairwise accuracy needs two equal, non-empty arrays, got {possible.shape} and {impossible.shape}")
    # equal up to float rounding (the same numbers summed in another order) is a tie
    tie = np.abs(possible - impossible) <= 1e-6 * np.maximum(np.abs(possible), np.abs(impossible))
    return float(np.mean(np.where(tie, 0.5, possible < impossible)))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 = impossible), ties averaged
    (the Mann-Whitney statistic)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise WmkitError("AUROC needs both possible and impossible clips")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def single_clip_accuracy(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, quantile: float = 0.9) -> float:
    """Balanced accuracy of thresholding surprise, the threshold being the ``quantile`` of possible
    clips' surprise in the even-numbered sets and the accuracy measured on the odd-numbered ones."""
    scores, labels, groups = np.asarray(scores, float), np.asarray(labels, bool), np.asarray(groups)
    calib, test = groups % 2 == 0, groups % 2 == 1
    if not (calib & ~labels).any() or not (test & labels).any() or not (test & ~labels).any():
        raise WmkitError("single-clip accuracy needs possible clips in the calibration half and both kinds in the test half")
    threshold = np.quantile(scores[calib & ~labels], quantile)
    flagged = scores > threshold
    return float(0.5 * (flagged[test & labels].mean() + (~flagged[test & ~labels]).mean()))


def ratio_ci(numerator: np.ndarray, denominator: np.ndarray, groups: np.ndarray, num: int = 1000,
             seed: int = 0) -> np.ndarray:
    """95% percentile intervals ``(K, 2)`` of ``sum(numerator) / sum(denominator)`` over rows
    ``(N, K)``, resampling whole groups (e.g. the episodes the rows come from: windows of one episode
    are not independent, so resampling the rows alone would make the interval too narrow)."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    if numerator.shape != denominator.shape or numerator.ndim != 2 or len(groups) != len(numerator) or not len(groups):
        raise WmkitError(f"ratio_ci needs two equal (N, K) arrays and N group ids, got {numerator.shape}, "
                         f"{denominator.shape} and {len(groups)} ids")
    if num < 1:
        raise WmkitError(f"ratio_ci needs at least 1 resampling, got {num}")
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    num_sum, den_sum = np.zeros((len(ids), numerator.shape[1])), np.zeros((len(ids), numerator.shape[1]))
    np.add.at(num_sum, inverse, numerator)
    np.add.at(den_sum, inverse, denominator)
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(len(ids), size=len(ids)), minlength=len(ids)) for _ in range(num)])
    ratios = (weights @ num_sum) / np.maximum(weights @ den_sum, 1e-12)
    return np.percentile(ratios, [2.5, 97.5], axis=0).T


def bootstrap_ci(metric, groups: np.ndarray, num: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of ``metric(selected_group_ids)`` over resamplings of the groups."""
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    values = []
    for _ in range(num):
        try:
            values.append(metric(rng.choice(ids, size=len(ids), replace=True)))
        except WmkitError:  # a resample without one kind of clip: skip it
            continue
    if not values:
        return (math.nan, math.nan)
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
