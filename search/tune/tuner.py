"""Ray Tune session: start (or join) Ray, put the data once, run the trials, shut down.

`search.tune.cluster` decides which Ray a run uses and starts or joins it; the environment
variables that quiet Ray are set before `ray` is first imported, by `search.tune.ray_env`.
Each call is one Tune experiment under `RUN_DIR/tune/<session>`; a resumed run starts a new
session, with the work list computed from the Optuna ledger, not from Tune's snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import ray
from ray import tune

from search.resources import Available, capacity
from search.checkpoints import storage_root
from search.study import Study, TrialSpec
from search.tune.checkpoint_record import CheckpointRecorder
from search.tune.cluster import start_ray
from search.tune.ledger import Ledger
from search.tune.progress import ProgressLine, Tally
from search.tune.ray_env import apply_ray_env, apply_tracker_env
from search.tune.scheduler import make_scheduler
from search.tune.searcher import GsaSearcher
from search.tune.trackers import logger_callbacks
from search.tune.trainable import GsaTrainable
from search.tune.trial_config import trial_key_of

@dataclass(frozen=True)
class SessionOutcome:
    """What one Tune session did: trials launched and finished, and why it stopped early."""

    launched: int
    finished: int
    interrupted: bool
    error: Exception | None = None


def trial_dirname(trial: Any) -> str:
    """Tune's per-trial folder: the trial key and Tune's id (short and readable)."""
    return f"{trial_key_of(trial.config)}_{trial.trial_id}"


def cluster_resources(address: str | None) -> Available:
    """CPUs and GPUs of the Ray cluster this process has started or joined.

    A trial lands on one node, but Ray reports the sum over nodes; the largest node is what
    bounds one trial, so that is what is returned.
    """
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    best = max(nodes, key=lambda r: (r.get("GPU", 0.0), r.get("CPU", 0.0)), default={})
    where = f"the largest node of the Ray cluster at {address}" if address else "this machine's Ray"
    return Available(cpu=float(best.get("CPU", 0.0)), gpu=float(best.get("GPU", 0.0)), where=where)


def put_data(data: Any) -> Any:
    """The one `ray.put` of the data set in a run; trials receive the reference."""
    return ray.put(data)


def run_session(*, study: Study, ledger: Ledger, run_dir: Path, data: Any, to_launch: int, session: str,
                measure: Callable[[TrialSpec], Mapping[str, float]], address: str | None = None,
                progress_every_s: float | None = None, storage_path: str | None = None) -> SessionOutcome:
    """Run up to `to_launch` trials of `study` in one Tune experiment; records go to `ledger`.

    The experiment and every trial's checkpoints go to `storage_path` (a local path or a pyarrow
    URI such as s3://...; default RUN_DIR/tune): a checkpoint after each epoch, the last two kept,
    each one's URI recorded in the trial's Optuna record.

    Tune's logger callbacks are the study's `loggers`; the progress line is named after the run
    directory and updates every `progress_every_s` (None: 1 s on a terminal, a minute in a log).

    Example:
        >>> run_session(study=s, ledger=Ledger(optuna_study), run_dir=Path("runs/q"), data=d,
        ...             to_launch=4, session="session_1", measure=measure)
    """
    tally = Tally(planned=to_launch, epochs_per_trial=study.train.epochs)
    if to_launch <= 0:
        return SessionOutcome(0, 0, False)
    apply_ray_env()
    apply_tracker_env(study.loggers)
    start_ray(address)
    # A failing trial's traceback is in its Tune folder (error.txt) and its reason in the results;
    # Tune's own ERROR lines would print it again on the user's terminal.
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    logging.getLogger("ray.train").setLevel(logging.ERROR)
    data_ref = put_data(data)
    searcher = GsaSearcher(study, ledger, to_launch=to_launch, measure=measure, tally=tally)
    pruner = study.search.pruner if study.kind == "search" else None
    scheduler = make_scheduler(ledger, pruner=pruner.name if pruner else "none",
                               options=pruner.options_dict() if pruner else {}, max_t=study.train.epochs)
    res = study.resources
    progress = ProgressLine(run_dir.name, tally, every_s=progress_every_s,
                            capacity=min(study.max_concurrent, capacity(study, cluster_resources(address))))
    trainable = tune.with_resources(
        tune.with_parameters(GsaTrainable, data=data_ref, study=study),
        {"cpu": res.cpu, "gpu": res.gpu},
    )
    storage = storage_root(run_dir, storage_path)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=to_launch,
            max_concurrent_trials=study.max_concurrent, reuse_actors=True,
            trial_name_creator=trial_dirname, trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=session, storage_path=storage, verbose=0,
            failure_config=tune.FailureConfig(max_failures=study.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2, checkpoint_frequency=1, checkpoint_at_end=False),
            callbacks=[progress, CheckpointRecorder(ledger, storage),
                       *logger_callbacks(study.loggers, run_dir=run_dir, run_name=run_dir.name)],
        ),
    )
    for tracker in ("mlflow", "alembic"):  # once imported: MLflow's notes on setting up its store
        logging.getLogger(tracker).setLevel(logging.WARNING)
    try:
        tuner.fit()
    finally:
        progress.close()  # a terminal line still open ends before the runner's next line
    finished = tally.done
    interrupted = searcher.error is None and finished < to_launch
    return SessionOutcome(to_launch, finished, interrupted, searcher.error)


def stop_ray() -> None:
    """Shut down this process's Ray connection (never `ray stop`: others may share the host)."""
    if ray.is_initialized():
        ray.shutdown()
