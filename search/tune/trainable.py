"""The Ray Tune trainable: one epoch of a `Trainer` per `step()`, checkpointed every epoch.

The data set arrives once through the object store (`tune.with_parameters`); the trial is
rebuilt from the study and the sampled values (`resolve_trial`), never from YAML. Checkpoints go
through Ray Tune's Checkpoint API to the run's storage path (`search.checkpoints` owns their
contents), so a retried or resumed trial continues on any node.
Worker imports stay light: torch and the training loop, no pandas, fvcore or Optuna.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from ray import tune

from reports.run_dir import BEST_EPOCH, BEST_VAL_ACC, TEST_ACC
from search.faults import before_epoch
from search.tune.trial_config import (CHECKPOINT_REJECTED, DIVERGED, DONE, RESTORED_HISTORY, RESULT_BUDGET,
                                      RESULT_EPOCH, TrialConfig)

if TYPE_CHECKING:
    from search.study import Study


def trial_device(gpu: float) -> str:
    """`cuda` when the trial holds (part of) a GPU, `cpu` when it holds none.

    A trial that was given a GPU on a worker without CUDA fails with that reason: training it
    on the CPU instead would be silently slow and unlike the study's other trials.
    """
    import torch

    if gpu <= 0:
        return "cpu"
    if not torch.cuda.is_available():
        raise RuntimeError(f"resources.gpu={gpu:g}, but this worker has no CUDA device torch can use "
                           f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'})")
    return "cuda"


class GsaTrainable(tune.Trainable):
    """Trains the trial a `TrialConfig` names (its Tune config is `TrialConfig.to_config()`).

    Tune saves a checkpoint after every epoch (`save_checkpoint`) to the run's storage path and
    restores a retried trial from it (`load_checkpoint`) on whichever node runs it; a trial that
    a resumed run starts again comes with the URI of its last checkpoint (`restore_from`).
    What a checkpoint holds and how it is loaded is `search.checkpoints`'s business.
    """

    def setup(self, config: dict, data: Any = None, study: Study | None = None) -> None:
        from search.worker import configure_process

        self._data, self._study = data, study
        res = study.resources  # equal for every trial, so a reused actor keeps these settings
        configure_process(threads=max(1, int(res.cpu)), device=trial_device(res.gpu))
        self._start(config)

    def _new_trainer(self) -> None:
        from search.study import resolve_trial
        from search.train_loop import Trainer

        trial = self._trial
        spec = resolve_trial(self._study, variant=trial.variant, seed=trial.seed, params=trial.params_dict())
        self._trainer = Trainer(spec, self._data, device=trial_device(self._study.resources.gpu),
                                augment=self._study.data.augment)
        self._budget = int(spec.train.epochs)

    def _start(self, config: dict) -> None:
        from search.checkpoints import load_trainer_from_uri

        self._trial = trial = TrialConfig.from_config(config)
        self._new_trainer()
        self._complexity = trial.complexity_dict()
        self._trial_key = trial.trial_key
        self._carried: list[dict] = []
        self._rejected = ""
        if trial.restore_from:
            self._restore(lambda trainer: load_trainer_from_uri(trainer, trial.restore_from))

    def _restore(self, load: Callable[[Any], Any]) -> None:
        """Restore the trainer with `load`; the epochs it brings are reported with the next result.
        A checkpoint `load` rejects (already set aside) leaves a fresh trainer at epoch 0 and its
        reason for the next result."""
        from search.checkpoints import CheckpointRejected

        try:
            load(self._trainer)
            self._carried = [r.as_dict() for r in self._trainer.history]
            self._rejected = ""  # a later checkpoint than one rejected before was loaded
        except CheckpointRejected as err:
            self._rejected = str(err)
            self._carried = []
            self._new_trainer()

    def step(self) -> dict:
        from search.train_loop import DivergedError

        trainer = self._trainer
        result: dict[str, Any] = {**self._complexity, RESULT_BUDGET: self._budget}
        if self._carried:
            result[RESTORED_HISTORY] = json.dumps(self._carried)
            self._carried = []
        if self._rejected:
            result[CHECKPOINT_REJECTED] = self._rejected
            self._rejected = ""
        if trainer.epoch >= self._budget:  # the checkpoint already holds the full budget
            last = trainer.history[-1].as_dict()
        else:
            try:
                before_epoch(self._trial_key, trainer.epoch + 1, trainer.model)  # test-only faults; off by default
                last = trainer.train_epoch().as_dict()
            except DivergedError as err:
                reason = str(err) if str(err).startswith("diverged") else f"diverged: {err}"
                return {**result, RESULT_EPOCH: trainer.epoch, DIVERGED: reason, DONE: True}
        result.update(last)
        result[BEST_VAL_ACC] = trainer.best_val_acc
        result[BEST_EPOCH] = trainer.best_epoch
        if trainer.epoch >= self._budget:
            result[TEST_ACC] = trainer.test()
            result[DONE] = True
        return result

    def reset_config(self, new_config: dict) -> bool:
        """Reuse this actor (torch already imported, data already fetched) for the next trial."""
        self._start(new_config)
        return True

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Write the trainer's state into Tune's checkpoint directory (Tune persists it to storage)."""
        from search.checkpoints import save_trainer

        save_trainer(self._trainer, checkpoint_dir)

    def load_checkpoint(self, checkpoint: Any) -> None:
        """Restore from Tune's checkpoint directory; one that cannot be loaded is set aside and the
        trial starts at epoch 0 (the next result says why)."""
        from search.checkpoints import load_trainer

        self._restore(lambda trainer: load_trainer(trainer, checkpoint))
