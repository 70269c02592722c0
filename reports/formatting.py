"""Number formatting for report tables: accuracy as %, deltas in percentage points, sizes and times.

Every formatter turns NaN/None into an em dash, which means "not applicable" (an inactive
parameter, a GSA setting of a conv net), never zero and never "the default". `format_table`
applies a formatter per column and names columns for people (`HEADERS`; CSVs keep raw names).
Compute and parameter columns get one unit per column, chosen by magnitude (`macs_unit`,
`params_unit`): "MMACs" and "params (K)" rather than 0.00143 GMACs and 93114.
"""

from __future__ import annotations

import math
import re
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from reports import columns as C

DASH = "—"


def _missing(x: object) -> bool:
    if x is None or x is pd.NA:
        return True
    try:
        return math.isnan(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def pct(x: object) -> str:
    """A fraction as a percentage with 2 decimals: 0.8523 -> '85.23%'."""
    return DASH if _missing(x) else f"{100.0 * float(x):.2f}%"


def pp(x: object) -> str:
    """A difference of fractions in signed percentage points: 0.0123 -> '+1.23 pp'."""
    return DASH if _missing(x) else f"{100.0 * float(x):+.2f} pp"


def sig3(x: object) -> str:
    """Three significant digits: 0.0123456 -> '0.0123', 1234.5 -> '1.23e+03'."""
    return DASH if _missing(x) else f"{float(x):.3g}"


def count(x: object) -> str:
    """A count with an SI suffix: 1234 -> '1.23K', 2_500_000 -> '2.50M', 12 -> '12'."""
    if _missing(x):
        return DASH
    value = float(x)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= div:
            return f"{value / div:.2f}{suffix}"
    return f"{int(round(value))}"


MACS_UNITS = ((1.0, "GMACs"), (1e-3, "MMACs"), (1e-6, "KMACs"))  # (size in GMACs, name), largest first
PARAMS_UNITS = ((1e9, "G"), (1e6, "M"), (1e3, "K"))


def _largest(values: object) -> float:
    known = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").abs().dropna()
    return float(known.max()) if len(known) else float("nan")


def macs_unit(gmacs: object) -> tuple[float, str]:
    """(divisor, name) for values in GMACs: the largest unit in which the largest value is >= 1.

    `macs_unit([0.00143, 0.0013]) == (1e-3, "MMACs")`; GMACs when nothing is known.
    """
    top = _largest(gmacs)
    for size, name in MACS_UNITS:
        if top >= size:
            return size, name
    return MACS_UNITS[0] if math.isnan(top) or top == 0 else MACS_UNITS[-1]


def params_unit(counts: object) -> tuple[float, str]:
    """(divisor, suffix) for parameter counts: "K" for 93114, "M" from a million, "" below 1000."""
    top = _largest(counts)
    for size, suffix in PARAMS_UNITS:
        if top >= size:
            return size, suffix
    return 1.0, ""


def scaled(x: object, divisor: float = 1.0) -> str:
    """x / divisor with 3 significant digits and no exponent: 1.434 -> '1.43', 93.1, 127."""
    if _missing(x):
        return DASH
    value = float(x) / divisor
    if value == 0.0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    return f"{value:.{digits}f}"


def macs(gmacs: object, among: object = None) -> str:
    """A MAC count with its unit: 0.00143 -> '1.43 MMACs', 2.5 -> '2.50 GMACs'; the unit is the
    one `macs_unit` picks for `among` (the values it is read beside) when given."""
    if _missing(gmacs):
        return DASH
    divisor, name = macs_unit([gmacs] if among is None else among)
    return f"{scaled(gmacs, divisor)} {name}"


def seconds(x: object) -> str:
    """A duration: 42.0 -> '42.0 s', 754 -> '12.6 min', 7300 -> '2.03 h'."""
    if _missing(x):
        return DASH
    value = float(x)
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def plain(x: object) -> str:
    """Anything else: text as is, yes/no for booleans, whole floats without '.0', other floats
    with 3 significant digits."""
    if _missing(x):
        return DASH
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{int(x)}" if x.is_integer() else f"{x:.3g}"
    return str(x)


def ci(lo: object, hi: object) -> str:
    """A confidence interval in percentage points: '[-0.50, +2.10] pp' (a dash without one)."""
    if _missing(lo) or _missing(hi):
        return DASH
    return f"[{100.0 * float(lo):+.2f}, {100.0 * float(hi):+.2f}] pp"


def mean_std(mean: object, std: object) -> str:
    """Accuracy mean ± std in %: '85.23 ± 0.41%' (just the mean when std is missing)."""
    if _missing(mean):
        return DASH
    if _missing(std):
        return pct(mean)
    return f"{100.0 * float(mean):.2f} ± {100.0 * float(std):.2f}%"


# the formatter of each known column; others go through `plain`
FORMATTERS: Mapping[str, Callable[[object], str]] = {
    C.VAL_ACC: pct, C.BEST_VAL_ACC: pct, C.TEST_ACC: pct,
    C.GMACS: sig3, C.ACT_MB: sig3, C.PARAMS: count,
    C.WALL_S: seconds, C.IMAGES_PER_SEC: sig3, C.DELTA: pp,
    C.IMPORTANCE: sig3,
}


# column headers in tables people read; CSV files keep the raw column names
HEADERS: Mapping[str, str] = {
    C.TRIAL_ID: "trial", C.GMACS: "GMACs", C.ACT_MB: "act. memory (MB)", C.VAL_ACC: "val acc",
    C.BEST_VAL_ACC: "best val acc", C.TEST_ACC: "test acc", C.WALL_S: "wall time",
    C.IMAGES_PER_SEC: "images/s", C.BUDGET_EPOCHS: "budget (epochs)", C.BEST_EPOCH: "best epoch",
}


def format_table(frame: pd.DataFrame, formatters: Mapping[str, Callable[[object], str]] | None = None,
                 *, headers: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A frame of strings: each column through its formatter (`FORMATTERS`, then `plain`), its
    header renamed by `headers` (default `HEADERS`; pass {} to keep the raw names).

    With the default headers, gmacs and params (unless `formatters` names them) are shown in
    one unit per column, chosen by magnitude, with the unit in the header ("MMACs", "params (K)").
    """
    chosen = {**FORMATTERS, **(formatters or {})}
    names = dict(HEADERS if headers is None else headers)
    if headers is None and C.GMACS in frame.columns and C.GMACS not in (formatters or {}):
        divisor, names[C.GMACS] = macs_unit(frame[C.GMACS])
        chosen[C.GMACS] = lambda x, d=divisor: scaled(x, d)
    if headers is None and C.PARAMS in frame.columns and C.PARAMS not in (formatters or {}):
        divisor, suffix = params_unit(frame[C.PARAMS])
        names[C.PARAMS] = f"params ({suffix})" if suffix else "params"
        chosen[C.PARAMS] = lambda x, d=divisor: scaled(x, d) if d > 1 else count(x)
    out = pd.DataFrame(index=range(len(frame)))
    for col in frame.columns:
        fmt = chosen.get(col, plain)
        out[names.get(col, col)] = [fmt(v) for v in frame[col].tolist()]
    return out


def file_stem(text: str) -> str:
    """A safe file stem: letters, digits, '.', '-' and '_' kept, anything else '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
