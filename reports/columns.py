"""Column names of the tidy results and curves frames, and the trial states.

`results.csv` holds the fixed columns below in this order, with the run's design-space
columns (run.json "space_fields") between BUDGET_EPOCHS and PARAMS. Every table, figure
and report refers to columns through these constants, never through string literals.
"""

from __future__ import annotations

# results.csv: one row per planned trial's finished record
TRIAL_ID = "trial_id"
VARIANT = "variant"
SEED = "seed"
STATE = "state"
REASON = "reason"
EPOCHS = "epochs"
BUDGET_EPOCHS = "budget_epochs"
PARAMS = "params"
GMACS = "gmacs"
ACT_MB = "act_mb"
VAL_ACC = "val_acc"
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
TEST_ACC = "test_acc"
WALL_S = "wall_s"
IMAGES_PER_SEC = "images_per_sec"

# added by write_comparison when several runs are concatenated
RUN = "run"

LEADING_COLUMNS: tuple[str, ...] = (TRIAL_ID, VARIANT, SEED, STATE, REASON, EPOCHS, BUDGET_EPOCHS)
METRIC_COLUMNS: tuple[str, ...] = (
    PARAMS, GMACS, ACT_MB, VAL_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC, WALL_S, IMAGES_PER_SEC,
)

# dtypes fixed by load_results; design-space columns keep what pandas infers
INT_COLUMNS: tuple[str, ...] = (SEED, EPOCHS, BUDGET_EPOCHS, PARAMS)
FLOAT_COLUMNS: tuple[str, ...] = (
    GMACS, ACT_MB, VAL_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC, WALL_S, IMAGES_PER_SEC,
)
STR_COLUMNS: tuple[str, ...] = (TRIAL_ID, VARIANT, STATE, REASON)

# curves.csv: one row per (trial, epoch)
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
LR = "lr"
CURVE_COLUMNS: tuple[str, ...] = (TRIAL_ID, EPOCH, TRAIN_LOSS, VAL_LOSS, VAL_ACC, LR, IMAGES_PER_SEC)

# trial states, as a user reads them
COMPLETE = "complete"
PRUNED = "pruned"
FAILED = "failed"
INFEASIBLE = "infeasible"
STATES: tuple[str, ...] = (COMPLETE, PRUNED, FAILED, INFEASIBLE)

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
