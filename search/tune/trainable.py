"""The Ray Tune trainable: one epoch of a `Trainer` per `step()`, checkpointed every epoch.

The data set arrives once through the object store (`tune.with_parameters`); the trial is
rebuilt from the study and the sampled values (`resolve_trial`), never from YAML. The
checkpoint `RUN_DIR/checkpoints/<trial_key>/last.pt` lets a retried or resumed trial continue.
Worker imports stay light: torch and the training loop, no pandas, fvcore or Optuna.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from reports.run_dir import BEST_EPOCH, BEST_VAL_ACC, TEST_ACC
from search.faults import before_epoch
from search.tune.trial_config import DIVERGED, DONE, RESTORED_HISTORY, RESULT_BUDGET, RESULT_EPOCH, TrialConfig

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
    """Trains the trial a `TrialConfig` names (its Tune config is `TrialConfig.to_config()`)."""

    def setup(self, config: dict, data: Any = None, study: Study | None = None, run_dir: str = "") -> None:
        from search.worker import configure_process

        self._data, self._study, self._run_dir = data, study, Path(run_dir)
        res = study.resources  # equal for every trial, so a reused actor keeps these settings
        configure_process(threads=max(1, int(res.cpu)), device=trial_device(res.gpu))
        self._start(config)

    def _start(self, config: dict) -> None:
        from search.study import resolve_trial
        from search.train_loop import Trainer, load_checkpoint

        trial = TrialConfig.from_config(config)
        spec = resolve_trial(self._study, variant=trial.variant, seed=trial.seed, params=trial.params_dict())
        res = self._study.resources
        self._trainer = Trainer(spec, self._data, device=trial_device(res.gpu), augment=self._study.data.augment)
        self._budget = int(spec.train.epochs)
        self._complexity = trial.complexity_dict()
        self._trial_key = trial.trial_key
        self._ckpt = self._run_dir / "checkpoints" / trial.trial_key / "last.pt"
        self._carried: list[dict] = []
        if self._ckpt.exists():
            load_checkpoint(self._trainer, self._ckpt)
            self._carried = [r.as_dict() for r in self._trainer.history]

    def step(self) -> dict:
        from search.train_loop import DivergedError, save_checkpoint

        trainer = self._trainer
        result: dict[str, Any] = {**self._complexity, RESULT_BUDGET: self._budget}
        if self._carried:
            result[RESTORED_HISTORY] = json.dumps(self._carried)
            self._carried = []
        if trainer.epoch >= self._budget:  # the checkpoint already holds the full budget
            last = trainer.history[-1].as_dict()
        else:
            try:
                before_epoch(self._trial_key, trainer.epoch + 1, trainer.model)  # test-only faults; off by default
                last = trainer.train_epoch().as_dict()
            except DivergedError as err:
                reason = str(err) if str(err).startswith("diverged") else f"diverged: {err}"
                return {**result, RESULT_EPOCH: trainer.epoch, DIVERGED: reason, DONE: True}
            save_checkpoint(trainer, self._ckpt)
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

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        # Our own checkpoint file is the state; Tune only records where it is.
        return {"path": str(self._ckpt)}

    def load_checkpoint(self, checkpoint: Any) -> None:
        from search.train_loop import load_checkpoint

        path = Path(checkpoint["path"]) if isinstance(checkpoint, dict) else self._ckpt
        if path.exists():
            load_checkpoint(self._trainer, path)
