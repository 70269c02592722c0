"""Column names of the report's frames: the run directory's (from `reports.run_dir`) and those
the table functions add. Every table, figure and report refers to columns through these
constants, never through string literals.
"""

from __future__ import annotations

# The run directory's columns and states are the contract's (reports.run_dir); re-exported
# here so that tables, figures and report code name every column through one module.
from reports.run_dir import (  # noqa: E402,F401
    ACT_MB, BEST_EPOCH, BEST_VAL_ACC, BUDGET_EPOCHS, COMPLETE, CURVE_COLUMNS, EPOCH, EPOCHS, FAILED, FLOAT_COLUMNS,
    GMACS, IMAGES_PER_SEC, INFEASIBLE, INT_COLUMNS, LEADING_COLUMNS, LR, METRIC_COLUMNS, PARAMS, PRUNED, REASON,
    SEED, STATE, STATES, STR_COLUMNS, TEST_ACC, TRAIN_LOSS, TRIAL_ID, VAL_ACC, VAL_LOSS, VARIANT, WALL_S,
)

# added by write_comparison when several runs are concatenated
RUN = "run"

# columns added by the table functions
N_SEEDS = "n_seeds"
FEW_SEEDS = "few_seeds"
DELTA = "delta"
DELTA_LO = "delta_ci_lo"
DELTA_HI = "delta_ci_hi"
PAIRED = "paired"
CI_METHOD = "ci_method"  # which interval: see reports.stats.METHODS
ERROR = "error"
CUM_FRACTION = "cum_fraction"
FACTOR_VALUE = "value"
RANK = "rank"
IMPORTANCE = "importance"
PARAM = "param"

MIN_SEEDS = 3  # fewer seeds than this flags a variant's mean as unreliable


def mean_col(metric: str) -> str:
    """Name of the per-variant mean column of `metric` (e.g. `val_acc_mean`)."""
    return f"{metric}_mean"


def std_col(metric: str) -> str:
    """Name of the per-variant standard-deviation column of `metric` (e.g. `val_acc_std`)."""
    return f"{metric}_std"
