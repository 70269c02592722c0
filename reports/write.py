"""All report file I/O: load run directories, compose, and write report.md, report.html,
figures/*.png and tables/*.csv.

`write_report` covers one run; `write_comparison` one report over several runs.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from reports import columns as C
from reports.combine import combine_runs, run_labels
from reports.compose import ReportParts, Study, compose_report, primary_metric
from reports.header import comparison_header, mismatches, pruner_name, run_header, sampler_name
from reports.importance import param_importance
from reports.load import ReportError, RunInfo, load_curves, load_results, load_run_info
from reports.render import FIGURES_DIR, render_html, render_markdown
from reports.run_dir import OPTUNA_DB

TABLES_DIR = "tables"
def _storage_url(info: RunInfo) -> str | None:
    """The run's own optuna.db when it is there (the run may have moved), else run.json's URL."""
    local = info.path / OPTUNA_DB
    if local.is_file():
        return f"sqlite:///{local.resolve()}"
    return info.run.storage


def _importance(info: RunInfo) -> pd.DataFrame | None:
    """Parameter importance of a search run; a frame with a note when it cannot be computed."""
    if info.kind != "search":
        return None
    url = _storage_url(info)
    names = list(info.objectives)
    missing = None
    if not url:
        missing = "run.json names no Optuna storage"
    elif url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        missing = f"the Optuna storage {url} is missing"  # connecting would create an empty one
    if missing:
        frame = pd.DataFrame(columns=names)
        frame.attrs["note"] = missing
        return frame
    try:
        return param_importance(url, str(info.run.optuna_study or info.name), objective_names=names)
    except Exception as err:  # noqa: BLE001 - a report must not fail for want of an importance table
        frame = pd.DataFrame(columns=names)
        frame.attrs["note"] = f"could not read the Optuna study ({type(err).__name__}: {str(err).splitlines()[0]})"
        return frame


def _continuous(infos: Sequence[RunInfo]) -> tuple[str, ...]:
    """Search-space fields declared as a float range without a step: no per-value EDF."""
    out = []
    for info in infos:
        space = info.study.get("space") or {}
        for name, spec in space.items() if isinstance(space, dict) else ():
            if isinstance(spec, dict) and "float" in spec and spec.get("step") is None and name not in out:
                out.append(name)
    return tuple(out)


def _curves(run_dir: Path) -> pd.DataFrame | None:
    try:
        return load_curves(run_dir)
    except ReportError:
        return None


def _save(parts: ReportParts, out: Path) -> Path:
    """Write figures, tables, report.md and report.html under `out`; returns report.html."""
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    (out / TABLES_DIR).mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for name, fig in parts.figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        images[name] = buf.getvalue()
        _atomic_write(out / FIGURES_DIR / f"{name}.png", images[name])
    for name, table in parts.tables.items():
        _atomic_write(out / TABLES_DIR / f"{name}.csv", table.to_csv(index=False).encode())
    _atomic_write(out / "report.md", render_markdown(parts.document).encode())
    html_path = out / "report.html"
    _atomic_write(html_path, render_html(parts.document, images).encode())
    return html_path


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary sibling and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_report(run_dir: str | Path, *, out: str | Path | None = None) -> Path:
    """Write the report of one run into `run_dir` (or `out`); returns the report.html path.

    Raises `ReportError` (a `ValueError`) with one line when the run directory is missing or
    half-written. Example: `write_report(Path("runs/quickstart"))`.
    """
    info = load_run_info(run_dir)
    trials = load_results(info.path)
    study = Study(
        title=f"{info.name}: {info.kind} report", description=info.description, kind=info.kind,
        baseline=info.baseline, objectives=dict(info.objectives), space_fields=info.space_fields,
        header=run_header(info, trials), continuous=_continuous([info]),
        sampler=sampler_name(info), pruner=pruner_name(info),
    )
    parts = compose_report(study, trials, _curves(info.path), _importance(info))
    return _save(parts, Path(out) if out is not None else info.path)


def _joined(names: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(n for n in names if n))


def write_comparison(run_dirs: Sequence[str | Path], *, out: str | Path, allow_mismatch: bool = False) -> Path:
    """One report over several runs, their trials concatenated with a `run` column.

    Ablation runs compare on the first run's baseline; anything else on a leaderboard. Runs must
    be like for like (data set, budget, objectives, input size: `header.like_for_like`): else a
    one-line `ReportError` names each field and its values, unless `allow_mismatch`, and then the
    report says so above everything else.
    Example: `write_comparison([Path("runs/a"), Path("runs/b")], out=Path("runs/a_vs_b"))`.
    """
    if not run_dirs:
        raise ReportError("compare needs at least one run directory, but got none")
    infos = [load_run_info(d) for d in run_dirs]
    labels = run_labels(infos)
    differ = mismatches(infos, labels)
    if differ and not allow_mismatch:
        raise ReportError(f"runs are not like for like: {'; '.join(differ)}; compare runs of one set-up, or pass "
                          f"--allow-mismatch (allow_mismatch=True) to compare them anyway")
    warnings = (f"These runs are not like for like ({'; '.join(differ)}): their accuracies, and any delta "
                f"between them, compare different set-ups.",) if differ else ()
    fields = tuple(dict.fromkeys(f for i in infos for f in i.space_fields))
    trials, unknown = combine_runs(infos, [load_results(i.path) for i in infos], labels, fields)
    curve_frames = []
    for info, label in zip(infos, labels):
        curves = _curves(info.path)
        if curves is not None:
            curve_frames.append(curves.assign(**{C.TRIAL_ID: f"{label}/" + curves[C.TRIAL_ID]}))
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else None
    kind = "ablation" if all(i.kind == "ablation" for i in infos) else "search"
    baseline = _comparison_baseline(infos[0], labels[0], trials) if kind == "ablation" else None
    objectives = dict(infos[0].objectives)
    notes = tuple(f"Run {label} did not record {', '.join(missing)}: shown as \"—\" (unknown) in its rows."
                  for label, missing in unknown.items())
    study = Study(
        title=f"comparison: {', '.join(labels)}",
        description=" / ".join(f"{label}: {i.description}" for label, i in zip(labels, infos) if i.description),
        kind=kind, baseline=baseline, objectives=objectives, space_fields=fields,
        header=comparison_header(infos, trials, labels), continuous=_continuous(infos), notes=notes,
        sampler=_joined([sampler_name(i) for i in infos]), pruner=_joined([pruner_name(i) for i in infos]),
        warnings=warnings,
    )
    if primary_metric(study) not in trials.columns:
        raise ReportError(f"objective {primary_metric(study)!r} of run {labels[0]} is not a results column")
    parts = compose_report(study, trials, curves, None)
    out = Path(out)
    return _save(parts, out)


def _comparison_baseline(info: RunInfo, label: str, trials: pd.DataFrame) -> str | None:
    """The first run's baseline, under its prefixed name when the name clashed."""
    base = info.baseline
    if base is None:
        return None
    for name in (base, f"{label}/{base}"):
        if (trials[C.VARIANT] == name).any():
            return name
    return None
