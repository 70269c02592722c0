"""`gsa-nas run`: a study (or `--resume RUN_DIR`) to a finished run directory.

Order matters: the study is loaded and checked before any directory exists or Ray starts;
then the run directory, the Optuna ledger (RUNNING leftovers closed as "interrupted"), the
work still to do, one data load, one Tune session, and results/report from the ledger.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import optuna

from reports import run_dir as R
from reports import write_report
from search.checkpoints import check_storage_path, is_local, list_sessions, storage_root
from search.env_info import env_info
from search.results import RESOLVED_KEYS, records_summary, space_fields, write_results
from search.study import DATASET_SHAPES, Study, TrialSpec, load_study, study_document, study_to_yaml
from search.output import say
from search.resources import check_placeable
from search.run_lock import RunLock
from search.storage import check_sqlite_file, check_url, connect, sqlite_file, without_password
from search.study.readers import Where, name as name_rule
from search.tune.ledger import Ledger, open_study
from search.tune.plan import pending_reruns, plan_work, remaining_work, retryable
from search.tune.space_compile import decode_params, make_pruner, make_sampler

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it
DEFAULT_OUT = "runs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    R.write_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")


def interrupted_note(count: int, *, now: bool) -> str:
    """`1 trial interrupted (closed in the Optuna storage as FAIL 'interrupted'; it is re-run on --resume)`."""
    one = count == 1
    when = "in this session" if now else "on --resume"
    return (f"{count} trial{'' if one else 's'} interrupted (closed in the Optuna storage as FAIL 'interrupted'; "
            f"{'it is' if one else 'they are'} re-run {when})")


def end_summary(name: str, status: str, states: Iterable[str], run_dir: Path, lost: int = 0) -> str:
    """`quickstart: interrupted; 3 records: 3 complete; 1 trial interrupted (...); results in ...`."""
    note = f"; {interrupted_note(lost, now=False)}" if lost else ""
    return f"{name}: {status}; {records_summary(states)}{note}; results in {run_dir / R.RESULTS_CSV}"


def resume_hint(run_dir: Path, lost: int = 0) -> str:
    """The line after an interrupted session: how to continue, and what will be re-run."""
    again = f" (it re-runs the {lost} interrupted trial{'' if lost == 1 else 's'})" if lost else ""
    return f"interrupted; continue with: gsa-nas run --resume {run_dir}{again}"


def run_record(study: Study, *, name: str, storage: str, started: str, run_id: str | None = None,
               storage_path: str | None = None) -> R.RunRecord:
    """The run.json record (status "running" until the session ends); the storage URL loses its password,
    and `storage_path` (Tune's checkpoints; None: RUN_DIR/tune) never carries credentials."""
    objectives = dict(study.search.objectives) if study.search is not None else {R.VAL_ACC: "max"}
    size = DATASET_SHAPES[study.data.name][0]
    fields = space_fields(study)
    return R.RunRecord(
        name=name, kind=study.kind, status=R.RUNNING, description=study.description, started=started,
        objectives=objectives, baseline=study.baseline, space_fields=tuple(fields),
        resolved_fields=tuple(k for k in RESOLVED_KEYS if k not in fields),
        data=R.DataRef(name=study.data.name, root=study.data.root), budget_epochs=study.train.epochs,
        input_size=(size, size), storage=without_password(storage), optuna_study=name, run_id=run_id,
        storage_path=storage_path,
        resources=dataclasses.asdict(study.resources), max_concurrent=study.max_concurrent,
    )


RESUME_SAFE_KEYS = ("num_samples", "max_concurrent", "resources", "max_rejections", "loggers")  # and resources.*


def resume_safe(key: str) -> bool:
    """Whether `--set key` may change on --resume: it must not change what a planned trial is."""
    return key in RESUME_SAFE_KEYS or key.startswith("resources.")


def check_resume_sets(resume: str, stored: Path, overrides: Mapping[str, Any]) -> None:
    """Refuse a `--set` that changes the planned trials of run `resume` (an unchanged value passes).

    Example: `check_resume_sets("runs/q", Path("runs/q/study.yaml"), {"train.epochs": 3})` raises
    when the run trained 2 epochs; `{"num_samples": 32}` extends a search and passes.
    """
    unsafe = {k: v for k, v in overrides.items() if not resume_safe(k)}
    if not unsafe:
        return
    base = study_document(load_study(str(stored)))
    for key, value in unsafe.items():
        if study_document(load_study(str(stored), {key: value})) != base:
            raise ValueError(
                f"--resume {resume}: --set {key} changes the planned trials (a resume may change only "
                f"num_samples, max_concurrent, resources.*, max_rejections, loggers); start a new run with "
                f"--name instead")


def _open_resume(resume: str, storage: str | None, overrides: Mapping[str, Any] | None,
                 storage_path: str | None = None) -> tuple[Study, Path, R.RunRecord, str]:
    run_dir = Path(resume)
    if not run_dir.exists():
        raise FileNotFoundError(f"--resume {resume}: the directory does not exist; give a run directory "
                                f"written by `gsa-nas run` (e.g. runs/<study-name>)")
    if not run_dir.is_dir():
        raise NotADirectoryError(f"--resume {resume}: not a directory; give a run directory written by `gsa-nas run`")
    if not (run_dir / R.STUDY_YAML).is_file() or not (run_dir / R.RUN_JSON).is_file():
        raise FileNotFoundError(
            f"--resume {resume}: no {R.STUDY_YAML}/{R.RUN_JSON} there; expected a run directory written by `gsa-nas run`")
    check_resume_sets(resume, run_dir / R.STUDY_YAML, overrides or {})
    st = load_study(str(run_dir / R.STUDY_YAML), overrides)
    old = R.read_run_record(run_dir)
    if storage:
        check_url(storage)
    old_database = None if storage else sqlite_file(str(old.storage))
    if old_database is not None:
        check_sqlite_file(old_database)
    url = storage or old.storage
    checkpoints = check_storage_path(storage_path) if storage_path else old.storage_path
    record = run_record(st, name=old.name, storage=url, started=old.started, run_id=old.run_id,
                        storage_path=checkpoints)
    return st, run_dir, dataclasses.replace(record, wall_s=old.wall_s), url


def _open_run(study: str | None, name: str | None, out: str | None, storage: str | None,
              overrides: Mapping[str, Any] | None, resume: str | None,
              storage_path: str | None = None) -> tuple[Study, Path, R.RunRecord, str]:
    """(study, run dir, run.json record, storage URL) — validated before anything is created on disk."""
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
        return _open_resume(resume, storage, overrides, storage_path)
    if not study:
        raise ValueError("gsa-nas run: give a study (a file, or a name in studies/) or --resume RUN_DIR")
    st = load_study(study, overrides)
    run_name = st.name if name is None else name_rule(Where("--name"), "", name)
    run_dir = Path(out or DEFAULT_OUT) / run_name
    if (run_dir / R.RUN_JSON).exists():
        raise ValueError(f"run directory {run_dir} already exists; continue it with "
                         f"`gsa-nas run --resume {run_dir}`, or choose another --name")
    if storage:
        check_url(storage)
    url = storage or f"sqlite:///{(run_dir / R.OPTUNA_DB).resolve()}"
    checkpoints = check_storage_path(storage_path) if storage_path else None
    return st, run_dir, run_record(st, name=run_name, storage=url, started=_now(), run_id=uuid.uuid4().hex,
                                   storage_path=checkpoints), url


def open_ledger(study: Study, record: R.RunRecord, url: str, *, create: bool) -> Ledger:
    """The run's Optuna study (sampler and pruner from the study file) wrapped as a Ledger."""
    if study.kind == "search":
        s = study.search
        sampler = make_sampler(s.sampler.name, s.sampler.seed, s.sampler.options_dict(), s.space)
        pruner = make_pruner(s.pruner.name, s.pruner.options_dict(), study.train.epochs)
    else:
        sampler, pruner = optuna.samplers.RandomSampler(seed=0), None
    objectives = list(record.objectives.items())  # {metric: "max" | "min"}, in the study's order
    ledger = Ledger(open_study(url, record.optuna_study, [d for _, d in objectives], run_id=record.run_id,
                               create=create, sampler=sampler, pruner=pruner, metric_names=[m for m, _ in objectives]))
    done = len(ledger.study.get_trials(deepcopy=False))
    if study.kind == "search" and done and study.search.sampler.seed is not None:
        # A seeded sampler in a new process restarts its sequence: reseed it from the study's progress
        # so that a resumed or extended search samples new points (repeats are also refused at launch).
        s = study.search
        ledger.study.sampler = make_sampler(s.sampler.name, s.sampler.seed + done, s.sampler.options_dict(), s.space)
    return ledger


def measure(spec: TrialSpec) -> dict[str, float]:
    """Params, gmacs and act_mb of a trial's network (fvcore, in the driver, before launch)."""
    from gsa_space.complexity import complexity  # fvcore is slow to import; only a run needs it

    return dataclasses.asdict(complexity(spec.net))


def write_outputs(run_dir: Path, study: Study, ledger: Ledger) -> Any:
    """results.csv/parquet and curves.csv from the ledger's finished records."""
    space = study.search.space if study.search is not None else ()
    return write_results(run_dir, study, ledger.finished_records(), lambda p: decode_params(p, space))


def _report(run_dir: Path) -> str:
    """Write the run's report; returns its outcome for run.json ("written" or "failed: ...")."""
    try:
        path = write_report(run_dir)
    except Exception as err:  # noqa: BLE001 - the run's results stand even if the report cannot be drawn
        reason = _one_line(err)
        say(f"report failed: {reason}; retry with `gsa-nas report {run_dir}`")
        return f"failed: {reason}"
    say(f"report: {path}")
    return "written"


@dataclass
class _Stop:
    """What stopped a session early: SIGTERM is handled as Ctrl-C, but exits 143."""

    sigterm: bool = False


def _handle_sigterm(stop: _Stop) -> None:
    """SIGTERM (Slurm, Kubernetes, `timeout`) stops the run like Ctrl-C: raised as SIGINT, which a
    running Tune experiment takes as "stop launching, let running trials checkpoint", and which
    elsewhere is a KeyboardInterrupt. Installed after Ray starts: Ray's own handler aborts."""
    def handler(signum: int, frame: Any) -> None:
        stop.sigterm = True
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, handler)


class _WallClock(threading.Thread):
    """Rewrites run.json's wall_s every `every_s` seconds, so a driver killed with SIGKILL loses
    at most that much of the session's time."""

    def __init__(self, run_dir: Path, record: R.RunRecord, every_s: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.record, self.every_s = run_dir, record, every_s
        self.start_s = time.monotonic()
        self.done = threading.Event()

    def elapsed(self) -> float:
        return round(self.record.wall_s + time.monotonic() - self.start_s, 1)

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            R.write_run_record(self.run_dir, dataclasses.replace(self.record, wall_s=self.elapsed()))


def _needs_session(study: Study, ledger: Ledger, *, retry_failed: bool) -> bool:
    """Whether a resumed run has anything to train (Ray starts only then)."""
    if remaining_work(study, ledger) or pending_reruns(study, ledger):
        return True
    if ledger.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        return True
    return retry_failed and any(retryable(t) for t in ledger.finished_records())


def run_from_cli(*, study: str | None, name: str | None = None, out: str | None = None, address: str | None = None,
                 storage: str | None = None, overrides: Mapping[str, Any] | None = None,
                 resume: str | None = None, report: bool = True, retry_failed: bool = False,
                 storage_path: str | None = None) -> int:
    """Run (or resume) a study; returns the exit code (0 finished, 130 interrupted, 143 on SIGTERM).

    Every check that can fail (study, --set, name, storage, lock, Ray) runs before the run
    directory is created or changed. Example: `run_from_cli(study="quickstart",
    overrides={"train.epochs": 2})` writes runs/quickstart/.
    """
    if retry_failed and not resume:
        raise ValueError("gsa-nas run: --retry-failed re-runs the failed trials of a run; give --resume RUN_DIR")
    st, run_dir, record, url = _open_run(study, name, out, storage, overrides, resume, storage_path)
    with RunLock(run_dir):
        if not resume and (run_dir / R.RUN_JSON).exists():  # another driver made it since the first check
            raise ValueError(f"run directory {run_dir} already exists; continue it with "
                             f"`gsa-nas run --resume {run_dir}`, or choose another --name")
        if resume or storage:
            connect(url)
        ledger = open_ledger(st, record, url, create=False) if resume else None
        needs_ray = ledger is None or _needs_session(st, ledger, retry_failed=retry_failed)
        from search.tune import check_storage_reach, cluster_resources, start_ray, stop_ray  # Ray only for a run
        from search.tune.ray_env import apply_tracker_env

        stop = _Stop()
        previous = signal.getsignal(signal.SIGTERM)
        try:
            if needs_ray:
                apply_tracker_env(st.loggers)  # before Ray starts: its workers inherit the environment
                joined = start_ray(address).address is not None
                check_placeable(st, cluster_resources(address))
                root = storage_root(run_dir, record.storage_path)
                if joined and is_local(root):  # a URI is every node's by design; a path may not be
                    check_storage_reach(Path(root), f"--storage-path {record.storage_path}" if record.storage_path
                                        else f"checkpoints in {root} (no --storage-path)")
            _handle_sigterm(stop)
            if ledger is None:  # a new run: its study name must be free in the storage
                ledger = _new_ledger(st, record, url, run_dir)
            return _run(st, run_dir, record, ledger, address=address, resume=bool(resume), report=report,
                        retry_failed=retry_failed, stop=stop)
        finally:
            stop_ray()
            signal.signal(signal.SIGTERM, previous)


def _new_ledger(st: Study, record: R.RunRecord, url: str, run_dir: Path) -> Ledger:
    """The new run's Optuna study; the run directory must exist first when the storage is its optuna.db."""
    database = sqlite_file(url)
    if database is not None and database.parent == run_dir.resolve():
        run_dir.mkdir(parents=True, exist_ok=True)
    return open_ledger(st, record, url, create=True)


def _run(st: Study, run_dir: Path, record: R.RunRecord, ledger: Ledger, *, address: str | None,
         resume: bool, report: bool, retry_failed: bool, stop: _Stop) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    R.write_atomic(run_dir / R.STUDY_YAML, study_to_yaml(st))
    R.write_run_record(run_dir, record)
    _write_json(run_dir / R.ENV_JSON, env_info())
    ledger.close_running()
    plan = plan_work(st, ledger, retry_failed=retry_failed)
    sessions = list_sessions(storage_root(run_dir, record.storage_path))
    rerun = f"; {interrupted_note(plan.rerun, now=True)}" if plan.rerun else ""
    retried = f"; {plan.retried} failed trial{'' if plan.retried == 1 else 's'} retried" if plan.retried else ""
    trials = f"{plan.to_launch} trial{'' if plan.to_launch == 1 else 's'}"
    say(f"{'resuming' if resume else 'running'} {record.name} in {run_dir}: {trials} to train"
        f" ({plan.finished} already finished{rerun}{retried})")
    clock = _WallClock(run_dir, record)
    clock.start()
    status, error, code = R.RUN_FAILED, None, 2
    frame = None
    try:
        outcome = None
        if plan.to_launch > 0:
            from search.data import load_data
            from search.tune import run_session

            data = load_data(st.data)
            outcome = run_session(study=st, ledger=ledger, run_dir=run_dir, data=data, to_launch=plan.to_launch,
                                  session=f"session_{len(sessions) + 1}", measure=measure, address=address,
                                  storage_path=record.storage_path)
        if outcome is not None and outcome.error is not None:
            error = outcome.error
        elif stop.sigterm or (outcome is not None and outcome.interrupted):
            status, code = R.RUN_INTERRUPTED, EXIT_TERMINATED if stop.sigterm else EXIT_INTERRUPTED
        else:
            status, code = R.FINISHED, 0
    except KeyboardInterrupt:
        status, code = R.RUN_INTERRUPTED, EXIT_TERMINATED if stop.sigterm else EXIT_INTERRUPTED
    except BaseException as err:  # recorded as "failed" with its reason, then raised as it was
        error = err
        raise
    finally:
        clock.done.set()
        clock.join()  # its last rewrite must not land after the final record below
        ledger.close_running()
        frame = write_outputs(run_dir, st, ledger)
        if status == R.FINISHED and remaining_work(st, ledger):
            status, code = R.RUN_INTERRUPTED, EXIT_INTERRUPTED  # Tune ended with planned trials unrun
        record = dataclasses.replace(
            record, status=status, wall_s=clock.elapsed(), finished=_now() if status == R.FINISHED else None,
            error=None if error is None else _one_line(error))
        R.write_run_record(run_dir, record)
    lost = len(pending_reruns(st, ledger)) if status == R.RUN_INTERRUPTED else 0
    say(end_summary(record.name, status, frame[R.STATE], run_dir, lost))
    if error is not None:
        raise ValueError(_one_line(error))
    if status == R.RUN_INTERRUPTED:
        say(resume_hint(run_dir, lost))
        return code
    outcome_text = _report(run_dir) if report else "skipped (--no-report)"
    R.write_run_record(run_dir, dataclasses.replace(record, report=outcome_text))
    return 0


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, KeyError)) else f"{type(err).__name__}: {text}"
