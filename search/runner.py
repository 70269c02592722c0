"""`gsa-nas run`: a study (or `--resume RUN_DIR`) to a finished run directory.

Order matters: the study is loaded and checked before any directory exists or Ray starts;
then the run directory, the Optuna ledger (RUNNING leftovers closed as "interrupted"), the
work still to do, one data load, one Tune session, and results/report from the ledger.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from search.results import records_summary
from search.tune.plan import pending_reruns, plan_work

EXIT_INTERRUPTED = 130
DEFAULT_OUT = "runs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


def interrupted_note(count: int, *, now: bool) -> str:
    """`1 trial interrupted (closed in the Optuna storage as FAIL 'interrupted'; it is re-run on --resume)`."""
    one = count == 1
    when = "in this session" if now else "on --resume"
    return (f"{count} trial{'' if one else 's'} interrupted (closed in the Optuna storage as FAIL 'interrupted'; "
            f"{'it is' if one else 'they are'} re-run {when})")


def end_summary(name: str, status: str, states: Iterable[str], run_dir: Path, lost: int = 0) -> str:
    """`quickstart: interrupted; 3 records: 3 complete; 1 trial interrupted (...); results in ...`."""
    note = f"; {interrupted_note(lost, now=False)}" if lost else ""
    return f"{name}: {status}; {records_summary(states)}{note}; results in {run_dir / 'results.csv'}"


def resume_hint(run_dir: Path, lost: int = 0) -> str:
    """The line after an interrupted session: how to continue, and what will be re-run."""
    again = f" (it re-runs the {lost} interrupted trial{'' if lost == 1 else 's'})" if lost else ""
    return f"interrupted; continue with: gsa-nas run --resume {run_dir}{again}"


def run_meta(study: Any, *, name: str, storage: str, started: str) -> dict[str, Any]:
    """The run.json document (status "running" until the session ends)."""
    from search.results import space_fields

    objectives = dict(study.search.objectives) if study.search is not None else {"val_acc": "max"}
    return {
        "name": name, "description": study.description, "kind": study.kind, "status": "running",
        "started": started, "finished": None, "wall_s": 0.0, "objectives": objectives,
        "baseline": study.baseline, "space_fields": space_fields(study),
        "data": {"name": study.data.name, "root": study.data.root}, "budget_epochs": study.train.epochs,
        "storage": storage, "optuna_study": name, "resources": dataclasses.asdict(study.resources),
        "max_concurrent": study.max_concurrent,
    }


RESUME_SAFE_KEYS = ("num_samples", "max_concurrent", "resources", "max_rejections")  # and resources.*


def resume_safe(key: str) -> bool:
    """Whether `--set key` may change on --resume: it must not change what a planned trial is."""
    return key in RESUME_SAFE_KEYS or key.startswith("resources.")


def check_resume_sets(resume: str, stored: Path, overrides: Mapping[str, Any]) -> None:
    """Refuse a `--set` that changes the planned trials of run `resume` (an unchanged value passes).

    Example: `check_resume_sets("runs/q", Path("runs/q/study.yaml"), {"train.epochs": 3})` raises
    when the run trained 2 epochs; `{"num_samples": 32}` extends a search and passes.
    """
    from search.study import load_study
    from search.study import study_document

    unsafe = {k: v for k, v in overrides.items() if not resume_safe(k)}
    if not unsafe:
        return
    base = study_document(load_study(str(stored)))
    for key, value in unsafe.items():
        if study_document(load_study(str(stored), {key: value})) != base:
            raise ValueError(
                f"--resume {resume}: --set {key} changes the planned trials (a resume may change only "
                f"num_samples, max_concurrent, resources.*, max_rejections); start a new run with --name instead")


def _open_resume(resume: str, storage: str | None,
                 overrides: Mapping[str, Any] | None) -> tuple[Any, Path, dict[str, Any]]:
    from search.study import load_study

    run_dir = Path(resume)
    if not run_dir.exists():
        raise FileNotFoundError(f"--resume {resume}: the directory does not exist; give a run directory "
                                f"written by `gsa-nas run` (e.g. runs/<study-name>)")
    if not run_dir.is_dir():
        raise NotADirectoryError(f"--resume {resume}: not a directory; give a run directory written by `gsa-nas run`")
    if not (run_dir / "study.yaml").is_file() or not (run_dir / "run.json").is_file():
        raise FileNotFoundError(
            f"--resume {resume}: no study.yaml/run.json there; expected a run directory written by `gsa-nas run`")
    check_resume_sets(resume, run_dir / "study.yaml", overrides or {})
    st = load_study(str(run_dir / "study.yaml"), overrides)
    old = json.loads((run_dir / "run.json").read_text())
    meta = run_meta(st, name=old["name"], storage=storage or old["storage"], started=old["started"])
    meta["wall_s"] = float(old.get("wall_s") or 0.0)
    return st, run_dir, meta


def _open_run(study: str | None, name: str | None, out: str | None, storage: str | None,
              overrides: Mapping[str, Any] | None, resume: str | None) -> tuple[Any, Path, dict[str, Any]]:
    """(study, run dir, run.json) — validated before anything is created on disk."""
    from search.study import load_study

    if resume and study:
        raise ValueError(f"gsa-nas run: give a study or --resume RUN_DIR, not both (got {study!r} and "
                         f"--resume {resume}); a resumed run uses its own study.yaml")
    if resume:
        # The original command line with --resume added is fine; a different place is not.
        where = Path(resume).resolve()
        given = [flag for flag, value, same in (("--name", name, where.name), ("--out", out, str(where.parent)))
                 if value is not None and (value if flag == "--name" else str(Path(value).resolve())) != same]
        if given:
            raise ValueError(f"gsa-nas run: {' and '.join(given)} differ from --resume {resume}; "
                             f"a resumed run keeps its directory and name")
        return _open_resume(resume, storage, overrides)
    if not study:
        raise ValueError("gsa-nas run: give a study (a file, or a name in studies/) or --resume RUN_DIR")
    st = load_study(study, overrides)
    run_name = name or st.name
    run_dir = Path(out or DEFAULT_OUT) / run_name
    if (run_dir / "run.json").exists():
        raise ValueError(f"run directory {run_dir} already exists; continue it with "
                         f"`gsa-nas run --resume {run_dir}`, or choose another --name")
    url = storage or f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
    return st, run_dir, run_meta(st, name=run_name, storage=url, started=_now())


def open_ledger(study: Any, meta: Mapping[str, Any]) -> Any:
    """The run's Optuna study (sampler and pruner from the study file) wrapped as a Ledger."""
    from search.tune.ledger import Ledger, open_study
    from search.tune.space_compile import make_pruner, make_sampler

    if study.kind == "search":
        s = study.search
        sampler = make_sampler(s.sampler.name, s.sampler.seed, s.sampler.options_dict(), s.space)
        pruner = make_pruner(s.pruner.name, s.pruner.options_dict(), study.train.epochs)
        directions = [d for _, d in s.objectives]
    else:
        import optuna

        sampler, pruner, directions = optuna.samplers.RandomSampler(seed=0), None, ["max"]
    return Ledger(open_study(meta["storage"], meta["optuna_study"], directions, sampler=sampler, pruner=pruner))


def measure(spec: Any) -> dict[str, float]:
    """Params, gmacs and act_mb of a trial's network (fvcore, in the driver, before launch)."""
    from gsa_space.complexity import complexity

    return dataclasses.asdict(complexity(spec.net))


def write_outputs(run_dir: Path, study: Any, ledger: Any) -> Any:
    """results.csv/parquet and curves.csv from the ledger's finished records."""
    from search.results import write_results
    from search.tune.space_compile import decode_params

    space = study.search.space if study.search is not None else ()
    return write_results(run_dir, study, ledger.finished_records(), lambda p: decode_params(p, space))


def _report(run_dir: Path) -> None:
    try:
        from reports import write_report
    except ImportError as err:
        print(f"report skipped: reports.write_report is not available ({err}); results are in {run_dir}")
        return
    try:
        path = write_report(run_dir)
        print(f"report: {path}")
    except Exception as err:  # the run's results stand even if the report cannot be drawn
        print(f"report failed: {type(err).__name__}: {err}; retry with `gsa-nas report {run_dir}`")


def run_from_cli(*, study: str | None, name: str | None = None, out: str | None = None, address: str | None = None,
                 storage: str | None = None, overrides: Mapping[str, Any] | None = None,
                 resume: str | None = None, report: bool = True) -> int:
    """Run (or resume) a study; returns the exit code (0 finished, 130 interrupted).

    Example: `run_from_cli(study="quickstart", overrides={"train.epochs": 2})` writes runs/quickstart/.
    """
    st, run_dir, meta = _open_run(study, name, out, storage, overrides, resume)
    from search.env_info import env_info
    from search.study import study_to_yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "study.yaml").write_text(study_to_yaml(st))
    _write_json(run_dir / "run.json", meta)
    _write_json(run_dir / "env.json", env_info())
    ledger = open_ledger(st, meta)
    ledger.close_running()
    plan = plan_work(st, ledger)
    sessions = sorted((run_dir / "tune").glob("session_*")) if (run_dir / "tune").exists() else []
    rerun = f"; {interrupted_note(plan.rerun, now=True)}" if plan.rerun else ""
    trials = f"{plan.to_launch} trial{'' if plan.to_launch == 1 else 's'}"
    print(f"{'resuming' if resume else 'running'} {meta['name']} in {run_dir}: {trials} to train"
          f" ({plan.finished} already finished{rerun})", flush=True)
    start = time.monotonic()
    status, error, code = "finished", None, 0
    try:
        outcome = None
        if plan.to_launch > 0:
            from search.data import load_data
            from search.tune import run_session

            data = load_data(st.data)
            outcome = run_session(study=st, ledger=ledger, run_dir=run_dir, data=data, to_launch=plan.to_launch,
                                  session=f"session_{len(sessions) + 1}", measure=measure, address=address)
        if outcome is not None and outcome.error is not None:
            status, error, code = "interrupted", outcome.error, 2
        elif outcome is not None and outcome.interrupted:
            status, code = "interrupted", EXIT_INTERRUPTED
    except KeyboardInterrupt:
        status, code = "interrupted", EXIT_INTERRUPTED
    finally:
        from search.tune import stop_ray

        stop_ray()
        ledger.close_running()
        frame = write_outputs(run_dir, st, ledger)
        meta.update(status=status, wall_s=round(meta["wall_s"] + time.monotonic() - start, 1),
                    finished=_now() if status == "finished" else None)
        if error is not None:
            meta["error"] = str(error)
        _write_json(run_dir / "run.json", meta)
    lost = len(pending_reruns(st, ledger)) if status == "interrupted" else 0
    print(end_summary(meta["name"], status, frame["state"], run_dir, lost))
    if error is not None:
        raise ValueError(str(error))
    if status == "interrupted":
        print(resume_hint(run_dir, lost))
        return code
    if report:
        _report(run_dir)
    return 0
