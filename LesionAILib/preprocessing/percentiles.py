"""Percentiles of a large sample, exactly as ``np.percentile`` computes them, partitioning only the tails.

Normalisation clips to extreme percentiles (0.5 / 99.5 %): the order statistics it needs sit in
the first and last percent of the sample. A full ``np.percentile`` partitions the whole sample
around six ranks; here a threshold from a strided coarse sample cuts each tail off first (one
comparison pass), and only that tail is partitioned. The result is bit-identical to
``np.percentile(values, q)`` with its default ``"linear"`` method (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_COARSE_STRIDE = 64


def _order_statistics(values: np.ndarray, ranks: Sequence[int]) -> dict[int, np.floating]:
    """``rank → np.partition(values, ranks)[rank]`` for a 1-D array without NaN (values sorted ascending).

    The values ≤ a threshold are a prefix of the sorted order, so when there are more of them than
    the largest low rank they hold every low order statistic at the same rank; likewise the values
    ≥ a threshold are a suffix, holding the high ones at ``rank − (n − suffix size)``. The two
    thresholds come from one partition of a strided coarse sample, at about twice the coarse rank
    (so a tail holds ≈ 2 × the values it must); should a tail fall short, the whole array is used.
    """
    n = values.size
    low = [rank for rank in ranks if rank < n // 2]
    high = [rank for rank in ranks if rank >= n // 2]
    coarse = values[::_COARSE_STRIDE]
    if n < 64 * _COARSE_STRIDE or (low and max(low) > n // 4) or (high and min(high) < n - n // 4):
        ordered = np.partition(values, list(ranks))
        return {rank: ordered[rank] for rank in ranks}
    last = coarse.size - 1
    cut_low = min(last, 2 * (max(low, default=0) // _COARSE_STRIDE) + 16)
    cut_high = max(0, last - 2 * ((n - 1 - min(high, default=n - 1)) // _COARSE_STRIDE) - 16)
    thresholds = np.partition(coarse, [cut_low, cut_high])
    found = {}
    if low:
        tail = values[values <= thresholds[cut_low]]
        source, offset = (tail, 0) if tail.size > max(low) else (values, 0)
        ordered = np.partition(source, [rank - offset for rank in low])
        found.update({rank: ordered[rank - offset] for rank in low})
    if high:
        tail = values[values >= thresholds[cut_high]]
        source, offset = (tail, n - tail.size) if n - tail.size <= min(high) else (values, 0)
        ordered = np.partition(source, [rank - offset for rank in high])
        found.update({rank: ordered[rank - offset] for rank in high})
    return found


def percentiles(values: np.ndarray, q: Sequence[float]) -> list[float]:
    """``np.percentile(values, q)`` (method ``"linear"``) for a 1-D float array without NaN, as floats.

    Each percentile interpolates between the order statistics at ``floor`` and ``floor + 1`` of
    its virtual index ``(n − 1) · q / 100``, with numpy's formula (float32 difference, float64
    weights); the order statistics come from the tails (:func:`_order_statistics`).
    """
    n = values.size
    virtual = (n - 1) * np.true_divide(np.asarray(q, dtype=np.float64), 100)
    previous = np.floor(virtual)
    pairs = [(n - 1, n - 1) if v >= n - 1 else (int(p), int(p) + 1) for v, p in zip(virtual, previous, strict=True)]
    found = _order_statistics(values, sorted({rank for pair in pairs for rank in pair}))
    results = []
    for (before, after), v, p in zip(pairs, virtual, previous, strict=True):
        a, b = found[before], found[after]
        difference, gamma = float(b - a), float(v - p) if v < n - 1 else 0.0
        results.append(float(a) + difference * gamma if gamma < 0.5 else float(b) - difference * (1.0 - gamma))
    return results
