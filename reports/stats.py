"""Confidence intervals for the difference of two means (variant minus baseline) over seeds.

Paired when both sides ran the same seeds (a t-interval on the per-seed differences), Welch's
unequal-variance t-interval otherwise. A BCa bootstrap (scipy.stats.bootstrap) takes over only
from MIN_BCA_SAMPLES seeds per side, where it holds its level; below that any bootstrap is too
narrow (a percentile bootstrap over two seeds is just their min and max). One seed on a side
gives no interval. The interval functions take a batch of samples (..., n), so that a coverage
simulation runs in one call of the same code that a report uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 10_000  # BCa bootstrap resamples
MIN_BCA_SAMPLES = 60  # from here on a BCa interval over normal noise covers ~94% of the time at 95%

PAIRED_T = "paired t"
WELCH_T = "Welch t"
PAIRED_BCA = "paired BCa bootstrap"
UNPAIRED_BCA = "BCa bootstrap"
NO_INTERVAL = "none"  # one seed on a side: no spread to build an interval from
METHODS = (PAIRED_T, WELCH_T, PAIRED_BCA, UNPAIRED_BCA, NO_INTERVAL)


@dataclass(frozen=True)
class DeltaCI:
    """Mean difference `delta` with its interval [lo, hi] (NaN when `method` is "none").

    `paired` says whether seeds were paired; `n` is the number of pairs when paired, else the
    seeds on the smaller side.
    """

    delta: float
    lo: float
    hi: float
    paired: bool
    method: str
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below 0 (False without an interval)."""
        return bool(self.lo > 0.0 or self.hi < 0.0)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, but got {level=}")


def _t_quantile(level: float, df: np.ndarray) -> np.ndarray:
    return stats.t.ppf(0.5 + level / 2.0, df)


def paired_t_interval(diffs: np.ndarray, *, level: float = DEFAULT_LEVEL
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Student t-interval of the mean of `diffs` (..., n) over its last axis: (mean, lo, hi).

    Needs n >= 2 (NaN bounds otherwise); equal differences give the point [mean, mean].
    """
    _check_level(level)
    d = np.asarray(diffs, dtype=float)                                   # (..., n)
    n = d.shape[-1]
    mean = d.mean(axis=-1)                                               # (...)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = _t_quantile(level, n - 1) * d.std(axis=-1, ddof=1) / np.sqrt(n)   # (...)
    return mean, mean - half, mean + half


def welch_t_interval(variant: np.ndarray, baseline: np.ndarray, *, level: float = DEFAULT_LEVEL
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t-interval of mean(variant) - mean(baseline) over the last axis: (delta, lo, hi).

    `variant` (..., n1) and `baseline` (..., n2) share their leading axes; needs n1, n2 >= 2.
    Degrees of freedom by Welch-Satterthwaite; two constant samples give a point.
    """
    _check_level(level)
    v, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    n1, n2 = v.shape[-1], b.shape[-1]
    delta = v.mean(axis=-1) - b.mean(axis=-1)                            # (...)
    if n1 < 2 or n2 < 2:
        nan = np.full_like(delta, np.nan)
        return delta, nan, nan
    a1 = v.var(axis=-1, ddof=1) / n1                                     # (...) squared std errors
    a2 = b.var(axis=-1, ddof=1) / n2                                     # (...)
    se2 = a1 + a2
    with np.errstate(invalid="ignore", divide="ignore"):  # both constant: 0/0, handled below
        df = se2 ** 2 / (a1 ** 2 / (n1 - 1) + a2 ** 2 / (n2 - 1))        # (...)
        half = np.where(se2 > 0.0, _t_quantile(level, df) * np.sqrt(se2), 0.0)
    return delta, delta - half, delta + half


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return x.mean(axis=axis) - y.mean(axis=axis)


def bca_interval(variant: np.ndarray, baseline: np.ndarray, *, paired: bool, level: float = DEFAULT_LEVEL,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BCa bootstrap interval of the mean difference over the last axis: (delta, lo, hi).

    Paired: resample seeds, keeping pairs together (equal shapes); else each side on its own.
    Seeded, so a report is reproducible. Constant samples give a point.
    """
    _check_level(level)
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, but got {resamples=}")
    v, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    batch = v.shape[:-1]
    v, b = v.reshape(-1, v.shape[-1]), b.reshape(-1, b.shape[-1])       # (B, n1), (B, n2)
    delta = v.mean(axis=-1) - b.mean(axis=-1)                            # (B,)
    lo, hi = delta.copy(), delta.copy()
    spread = (np.ptp(v - b, axis=-1) if paired else np.ptp(v, axis=-1) + np.ptp(b, axis=-1)) > 0.0  # (B,)
    if spread.any():
        data = (v[spread] - b[spread],) if paired else (v[spread], b[spread])
        res = stats.bootstrap(data, np.mean if paired else _mean_diff, vectorized=True, paired=False, axis=-1,
                              n_resamples=resamples, confidence_level=level, method="BCa",
                              rng=np.random.default_rng(seed))
        lo[spread], hi[spread] = res.confidence_interval.low, res.confidence_interval.high
    return delta.reshape(batch), lo.reshape(batch), hi.reshape(batch)


def interval_method(n_variant: int, n_baseline: int, *, paired: bool) -> str:
    """Which interval fits samples of these sizes (see the module docstring)."""
    if min(n_variant, n_baseline) < 2:
        return NO_INTERVAL
    if min(n_variant, n_baseline) >= MIN_BCA_SAMPLES:
        return PAIRED_BCA if paired else UNPAIRED_BCA
    return PAIRED_T if paired else WELCH_T


def delta_interval(variant: np.ndarray, baseline: np.ndarray, *, paired: bool, level: float = DEFAULT_LEVEL,
                   resamples: int = DEFAULT_RESAMPLES, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The interval of mean(variant) - mean(baseline) by `interval_method`, over a batch.

    variant (..., n1), baseline (..., n2) with equal leading axes (and n1 == n2 when `paired`,
    element i of both being seed i). Returns (delta, lo, hi, method).
    """
    v, b = np.asarray(variant, dtype=float), np.asarray(baseline, dtype=float)
    if v.shape[:-1] != b.shape[:-1] or v.ndim < 1 or v.shape[-1] == 0 or b.shape[-1] == 0:
        raise ValueError(f"samples need equal leading axes and at least one value, but got shapes "
                         f"{v.shape} and {b.shape}")
    if paired and v.shape != b.shape:
        raise ValueError(f"paired samples need equal shapes, but got {v.shape} and {b.shape}")
    method = interval_method(v.shape[-1], b.shape[-1], paired=paired)
    if method in (PAIRED_BCA, UNPAIRED_BCA):
        return (*bca_interval(v, b, paired=paired, level=level, resamples=resamples, seed=seed), method)
    if paired:
        return (*paired_t_interval(v - b, level=level), method)
    return (*welch_t_interval(v, b, level=level), method)


def delta_ci(
    variant: Mapping[int, float], baseline: Mapping[int, float], *,
    level: float = DEFAULT_LEVEL, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> DeltaCI:
    """Interval of variant minus baseline, given {seed: value}; paired iff the seed sets match.

    Example: `delta_ci({0: 0.91, 1: 0.95}, {0: 0.90, 1: 0.92}).method == "paired t"`.
    """
    paired = set(variant) == set(baseline)
    keys: Sequence[int] = sorted(variant)
    v = np.array([variant[k] for k in keys], dtype=float)
    b = np.array([baseline[k] for k in (keys if paired else sorted(baseline))], dtype=float)
    delta, lo, hi, method = delta_interval(v, b, paired=paired, level=level, resamples=resamples, seed=seed)
    n = len(v) if paired else min(len(v), len(b))
    return DeltaCI(float(delta), float(lo), float(hi), paired, method, n)
