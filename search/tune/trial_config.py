"""The Tune config of one trial and the keys of the results its trainable reports.

Ray Tune carries a trial's config as a plain dict (stored in Tune's experiment state), so the
searcher writes it with `TrialConfig.to_config()` and the trainable and schedulers read it back
with `TrialConfig.from_config()`; no other module spells a config key. Result keys that are ours
(not metrics of the run-directory contract) are named here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# result keys a GsaTrainable reports besides the per-epoch metrics
DONE = "done"                            # Tune's own: the trial reached its budget (or diverged)
DIVERGED = "diverged"                    # the reason, when the loss stopped being finite
RESTORED_HISTORY = "restored_history"    # JSON list of epochs trained before a restore
RESULT_EPOCH = "epoch"                   # Tune's time attribute for schedulers (ASHA)
RESULT_BUDGET = "budget_epochs"          # the trial's full budget, for the progress line's k/n
CHECKPOINT_REJECTED = "checkpoint_rejected"  # why a checkpoint was set aside and the trial began at epoch 0

_NUMBER, _KEY, _VARIANT, _SEED, _PARAMS, _COMPLEXITY, _RESTORE = (
    "optuna_number", "trial_key", "variant", "seed", "params", "complexity", "restore_from")


@dataclass(frozen=True)
class TrialConfig:
    """What a trainable needs to rebuild its trial: the Optuna trial number (its ledger record),
    the stable trial key, the ablation variant (None in a search), the seed, the sampled values,
    the compute counted before launch (reported with every result), and the checkpoint URI an
    earlier attempt of the same trial key left (None: start at epoch 0)."""

    optuna_number: int
    trial_key: str
    variant: str | None
    seed: int
    params: tuple[tuple[str, Any], ...] = ()
    complexity: tuple[tuple[str, float], ...] = ()
    restore_from: str | None = None

    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def complexity_dict(self) -> dict[str, float]:
        return dict(self.complexity)

    def to_config(self) -> dict[str, Any]:
        """The plain dict Ray Tune stores (and hands back to the trainable)."""
        return {_NUMBER: self.optuna_number, _KEY: self.trial_key, _VARIANT: self.variant, _SEED: self.seed,
                _PARAMS: dict(self.params), _COMPLEXITY: dict(self.complexity), _RESTORE: self.restore_from}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "TrialConfig":
        """The inverse of `to_config` (KeyError naming the key when Tune hands back something else)."""
        missing = [k for k in (_NUMBER, _KEY, _VARIANT, _SEED) if k not in config]
        if missing:
            raise KeyError(f"a gsa-nas Tune config needs {missing}, but got keys {sorted(config)}")
        return cls(optuna_number=int(config[_NUMBER]), trial_key=str(config[_KEY]), variant=config[_VARIANT],
                   seed=int(config[_SEED]), params=tuple((config.get(_PARAMS) or {}).items()),
                   complexity=tuple((config.get(_COMPLEXITY) or {}).items()),
                   restore_from=config.get(_RESTORE) or None)


def optuna_number(config: Mapping[str, Any]) -> int | None:
    """The Optuna trial number of a Tune trial's config; None for a config that is not ours."""
    number = config.get(_NUMBER)
    return None if number is None else int(number)


def trial_key_of(config: Mapping[str, Any]) -> str:
    """The trial key of a Tune trial's config (for folder names), "trial" when it has none."""
    return str(config.get(_KEY, "trial"))
