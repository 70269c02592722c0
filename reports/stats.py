"""Bootstrap confidence intervals for the difference of two means (variant minus baseline).

Paired when both sides were run on the same seeds (resample seeds, keep pairs together),
unpaired otherwise (resample each side on its own). Seeded, so a report is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class DeltaCI:
    """Mean difference `delta` with its bootstrap interval [lo, hi]; `paired` says which test."""

    delta: float
    lo: float
    hi: float
    paired: bool


def _samples(variant: Sequence[float], baseline: Sequence[float], resamples: int, level: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Checks the bootstrap settings; returns both samples as float arrays (their shapes unchecked)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, but got {resamples=}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, but got {level=}")
    return np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)


def _interval(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def paired_delta_ci(
    variant: Sequence[float], baseline: Sequence[float], *,
    resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
) -> DeltaCI:
    """Percentile bootstrap of mean(variant - baseline) over pairs (element i of both = one seed)."""
    v, b = _samples(variant, baseline, resamples, level)
    if v.shape != b.shape or v.ndim != 1 or v.size == 0:
        raise ValueError(f"paired samples need equal non-empty lengths, but got {v.size} and {b.size}")
    diffs = v - b                                                    # (n,)
    delta = float(diffs.mean())
    if np.ptp(diffs) == 0.0:  # every resample has the same mean; skip float noise of re-summing
        return DeltaCI(delta, delta, delta, True)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, diffs.size, size=(resamples, diffs.size))  # (R, n)
    means = diffs[idx].mean(axis=1)                                  # (R,)
    lo, hi = _interval(means, level)
    return DeltaCI(delta, lo, hi, True)


def unpaired_delta_ci(
    variant: Sequence[float], baseline: Sequence[float], *,
    resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
) -> DeltaCI:
    """Percentile bootstrap of mean(variant) - mean(baseline), each side resampled on its own."""
    v, b = _samples(variant, baseline, resamples, level)
    if v.ndim != 1 or b.ndim != 1 or v.size == 0 or b.size == 0:
        raise ValueError(f"unpaired samples need non-empty 1-d inputs, but got sizes {v.size} and {b.size}")
    delta = float(v.mean() - b.mean())
    if np.ptp(v) == 0.0 and np.ptp(b) == 0.0:
        return DeltaCI(delta, delta, delta, False)
    rng = np.random.default_rng(seed)
    v_means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)  # (R,)
    b_means = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)  # (R,)
    lo, hi = _interval(v_means - b_means, level)
    return DeltaCI(delta, lo, hi, False)


def delta_ci(
    variant: dict[int, float], baseline: dict[int, float], *,
    resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0,
) -> DeltaCI:
    """Bootstrap CI of variant minus baseline, given {seed: value}; paired iff the seed sets match."""
    if set(variant) == set(baseline):
        keys = sorted(variant)
        return paired_delta_ci([variant[k] for k in keys], [baseline[k] for k in keys],
                               resamples=resamples, level=level, seed=seed)
    return unpaired_delta_ci(list(variant.values()), list(baseline.values()),
                             resamples=resamples, level=level, seed=seed)
