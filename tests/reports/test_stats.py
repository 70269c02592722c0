"""Intervals of a variant's delta against the baseline: scipy.stats as the reference, and a seeded
coverage simulation (the nominal 95% interval must cover the true delta 93-97% of the time)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from reports import stats as S

SIMULATIONS = 4000  # simulated ablations per seed count: the coverage's standard error is ~0.35 pp
TRUE_DELTA = -0.0167


def _simulate(n_variant: int, n_baseline: int, rng: np.random.Generator, *, sims: int = SIMULATIONS,
              shared: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`sims` ablations (sims, n): accuracy = 0.9 (+ TRUE_DELTA) + a seed's effect + normal noise.

    With `shared`, both arms ran seeds 0..n-1 and share each seed's effect (what pairing exploits;
    the longer arm's extra seeds are its own); else the arms ran different seeds.
    """
    n = max(n_variant, n_baseline)
    seed_effect = rng.normal(0.0, 0.01, size=(sims, n))                                  # (S, n)
    other = seed_effect if shared else rng.normal(0.0, 0.01, size=(sims, n))             # (S, n)
    variant = 0.9 + TRUE_DELTA + seed_effect[:, :n_variant] + rng.normal(0.0, 0.008, size=(sims, n_variant))
    baseline = 0.9 + other[:, :n_baseline] + rng.normal(0.0, 0.008, size=(sims, n_baseline))
    return variant, baseline


def _coverage(lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.mean((lo <= TRUE_DELTA) & (TRUE_DELTA <= hi)))


@pytest.mark.parametrize("seeds", [2, 3, 5, 10])
def test_delta_interval_paired_covers_nominal_95(seeds):
    variant, baseline = _simulate(seeds, seeds, np.random.default_rng(seeds))
    _, lo, hi, method = S.delta_interval(variant, baseline, paired=True)
    assert method == S.PAIRED_T
    assert 0.93 <= _coverage(lo, hi) <= 0.97


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_delta_interval_welch_covers_nominal_95_on_different_seeds(seeds):
    variant, baseline = _simulate(seeds - 1, seeds, np.random.default_rng(100 + seeds), shared=False)
    _, lo, hi, method = S.delta_interval(variant, baseline, paired=False)
    assert method == S.WELCH_T
    assert 0.93 <= _coverage(lo, hi) <= 0.97


def test_delta_interval_welch_errs_wide_when_seed_effects_are_shared():
    # a variant lost one of the baseline's seeds: Welch ignores the shared seed effect, so its
    # interval is wider than it needs to be (conservative), never narrower
    variant, baseline = _simulate(4, 5, np.random.default_rng(200))
    _, lo, hi, _ = S.delta_interval(variant, baseline, paired=False)
    assert _coverage(lo, hi) >= 0.95


def test_delta_interval_bca_covers_nominal_95_from_its_minimum_sample():
    n = S.MIN_BCA_SAMPLES
    variant, baseline = _simulate(n, n, np.random.default_rng(7))
    _, lo, hi, method = S.delta_interval(variant, baseline, paired=True, resamples=1000)
    assert method == S.PAIRED_BCA
    assert 0.93 <= _coverage(lo, hi) <= 0.97


def test_delta_ci_two_seeds_is_the_t_interval_not_min_max():
    # the case: two paired differences of -1.85 and -1.48 pp; a percentile bootstrap
    # read [-1.85, -1.48], the t-interval with 1 degree of freedom is about [-4.02, +0.68]
    ci = S.delta_ci({0: 0.9000 - 0.0185, 1: 0.9100 - 0.0148}, {0: 0.9000, 1: 0.9100})
    assert (ci.method, ci.paired, ci.n) == (S.PAIRED_T, True, 2)
    assert ci.delta == pytest.approx(-0.01665)
    half = 12.7062047 * 0.00185  # t(0.975, df=1) x std error (sample std 0.0037/sqrt(2), over sqrt(2))
    assert (ci.lo, ci.hi) == pytest.approx((-0.01665 - half, -0.01665 + half), abs=1e-8)
    assert (round(100 * ci.lo, 2), round(100 * ci.hi, 2)) == (-4.02, 0.69)
    assert not ci.excludes_zero


def test_paired_t_interval_matches_scipy_ttest():
    diffs = np.array([0.01, 0.03, -0.01, 0.02, 0.015])
    mean, lo, hi = S.paired_t_interval(diffs, level=0.9)
    ref = sps.ttest_1samp(diffs, 0.0).confidence_interval(0.9)
    assert (float(mean), float(lo), float(hi)) == pytest.approx((diffs.mean(), ref.low, ref.high), abs=1e-12)


def test_welch_t_interval_matches_scipy_ttest_ind():
    v, b = np.array([0.91, 0.95, 0.90]), np.array([0.90, 0.92, 0.91, 0.93, 0.88])
    delta, lo, hi = S.welch_t_interval(v, b)
    ref = sps.ttest_ind(v, b, equal_var=False).confidence_interval(0.95)
    assert (float(delta), float(lo), float(hi)) == pytest.approx((v.mean() - b.mean(), ref.low, ref.high), abs=1e-12)


def test_delta_interval_batch_equals_one_at_a_time():
    rng = np.random.default_rng(3)
    v, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 5))
    delta, lo, hi, _ = S.delta_interval(v, b, paired=False)
    for i in range(4):
        one = S.delta_ci(dict(enumerate(v[i])), {10 + k: x for k, x in enumerate(b[i])})
        assert (one.delta, one.lo, one.hi) == pytest.approx((delta[i], lo[i], hi[i]), abs=1e-12)


def test_bca_interval_matches_scipy_bootstrap():
    rng = np.random.default_rng(5)
    v, b = rng.normal(0.9, 0.01, size=70), rng.normal(0.89, 0.01, size=70)
    _, lo, hi = S.bca_interval(v, b, paired=True, resamples=3000, seed=11)
    ref = sps.bootstrap((v - b,), np.mean, n_resamples=3000, method="BCa", rng=np.random.default_rng(11))
    assert (float(lo), float(hi)) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high),
                                                   abs=1e-12)


@pytest.mark.parametrize(("n_variant", "n_baseline", "paired", "method"), [
    (1, 1, True, S.NO_INTERVAL), (1, 3, False, S.NO_INTERVAL), (2, 2, True, S.PAIRED_T),
    (2, 3, False, S.WELCH_T), (59, 80, False, S.WELCH_T), (S.MIN_BCA_SAMPLES, 80, False, S.UNPAIRED_BCA),
    (S.MIN_BCA_SAMPLES, S.MIN_BCA_SAMPLES, True, S.PAIRED_BCA),
])
def test_interval_method_by_sample_size(n_variant, n_baseline, paired, method):
    assert S.interval_method(n_variant, n_baseline, paired=paired) == method


def test_delta_ci_one_seed_has_no_interval():
    ci = S.delta_ci({0: 0.91}, {0: 0.90, 1: 0.92, 2: 0.91})
    assert (ci.method, ci.paired, ci.n) == (S.NO_INTERVAL, False, 1)
    assert ci.delta == pytest.approx(0.0)
    assert (np.isnan(ci.lo), np.isnan(ci.hi), ci.excludes_zero) == (True, True, False)


def test_delta_ci_constant_difference_is_a_point():
    ci = S.delta_ci({0: 0.91, 1: 0.93, 2: 0.95}, {0: 0.90, 1: 0.92, 2: 0.94})
    assert (ci.lo, ci.hi) == pytest.approx((0.01, 0.01), abs=1e-12)
    assert ci.excludes_zero


def test_delta_ci_paired_only_when_seed_sets_match():
    assert S.delta_ci({0: 0.9, 1: 0.8}, {0: 0.7, 1: 0.75}).method == S.PAIRED_T
    assert S.delta_ci({0: 0.9, 2: 0.8}, {0: 0.7, 1: 0.75}).method == S.WELCH_T


def test_delta_interval_paired_shapes_must_match():
    with pytest.raises(ValueError, match=r"paired samples need equal shapes, but got \(3,\) and \(2,\)"):
        S.delta_interval(np.zeros(3), np.zeros(2), paired=True)


def test_paired_t_interval_bad_level_raises():
    with pytest.raises(ValueError, match="level must lie strictly between 0 and 1, but got level=1.5"):
        S.paired_t_interval(np.zeros(3), level=1.5)
