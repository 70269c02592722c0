"""Reports from run directories: tidy results in, tables / figures / report files out.

`run_dir` owns the run-directory contract (file names, columns, trial states, run.json) that
`search` writes through; `load` reads a run into one row per trial; `tables`, `stats`,
`figures` are pure functions of frames; `compose`, `render` and `write` turn them into
report.md, one self-contained report.html, figures/*.png and tables/*.csv. No Ray, no search.
"""

from reports.importance import param_importance
from reports.ledger import Ledger, compute_ledger
from reports.load import ReportError, RunInfo, load_curves, load_results, load_run_info
from reports.tables import ablation_table, error_edf, excluded_trials, leaderboard, pareto_front
from reports.write import write_comparison, write_report

__all__ = [
    "Ledger",
    "ReportError",
    "RunInfo",
    "ablation_table",
    "compute_ledger",
    "error_edf",
    "excluded_trials",
    "leaderboard",
    "load_curves",
    "load_results",
    "load_run_info",
    "param_importance",
    "pareto_front",
    "write_comparison",
    "write_report",
]
