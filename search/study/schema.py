"""The study schema: what a YAML study file says, as frozen objects, and the trials it plans.

Everything else in `search.study` produces or consumes these objects: `load` builds a `Study`
(every problem one `StudyError` line naming the file and the key path), `resolve` turns a
study plus sampled values into a `TrialSpec` that a worker trains without reading YAML again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gsa_space.config import NetConfig
    from gsa_space.space import Dimension

__all__ = [
    "DataConfig", "TrainConfig", "ModelConfig", "Variant", "Resources", "SamplerConfig",
    "PrunerConfig", "SearchConfig", "Study", "TrialSpec", "StudyError", "frozen", "planned_trials",
    "DATASETS", "DATASET_SHAPES", "SAMPLERS", "PRUNERS", "OPTUNA_PRUNERS", "DIRECTIONS", "CONSTRAINT_KEYS",
    "AMP_MODES", "amp_mode", "LOGGERS", "DEFAULT_LOGGERS", "LOGGER_PACKAGES",
]

DATASETS: tuple[str, ...] = ("digits", "cifar10", "cifar100")
# (input_size, in_chans, num_classes) of each data set: a trial's net is built for its data.
DATASET_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (8, 1, 10), "cifar10": (32, 3, 10),
                                                   "cifar100": (32, 3, 100)}
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SCHEDULES: tuple[str, ...] = ("cosine", "constant")
KINDS: tuple[str, ...] = ("ablation", "search")
SAMPLERS: tuple[str, ...] = ("tpe", "random", "grid", "cmaes", "nsga2")
PRUNERS: tuple[str, ...] = ("median", "percentile", "successive_halving", "hyperband", "asha", "none")
# Pruners that Optuna itself runs (on intermediate values); asha is Ray Tune's scheduler.
OPTUNA_PRUNERS: tuple[str, ...] = ("median", "percentile", "successive_halving", "hyperband")
DIRECTIONS: tuple[str, ...] = ("max", "min")
CONSTRAINT_KEYS: tuple[str, ...] = ("max_gmacs", "max_params")
# Mixed precision of a trial: autocast to bfloat16, to float16 (with a gradient scaler, for GPUs
# without bfloat16), or none. YAML's true / false (also on / off / yes / no) read as bf16 / off.
AMP_MODES: tuple[str, ...] = ("bf16", "fp16", "off")
# Ray Tune's own logger callbacks a study can switch on (`loggers:`), per Tune trial folder:
# json (result.json) and csv (progress.csv) are what `ray.tune.ExperimentAnalysis` reads.
LOGGERS: tuple[str, ...] = ("json", "csv", "tensorboard", "mlflow", "wandb")
DEFAULT_LOGGERS: tuple[str, ...] = ("json", "csv")
# logger -> (the module it needs, how to install it): checked when a study is loaded.
LOGGER_PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "pip install tensorboardX (it comes with ray[tune])"),
    "mlflow": ("mlflow", "pip install 'gsa-nas[trackers]' (mlflow-skinny)"),
    "wandb": ("wandb", "pip install 'gsa-nas[trackers]' (wandb)"),
}


def amp_mode(value: Any) -> str:
    """`train.amp` as one of AMP_MODES: a bool reads as "bf16" (True) or "off" (False)."""
    if isinstance(value, bool):
        return "bf16" if value else "off"
    if value not in AMP_MODES:
        raise ValueError(f"train.amp must be one of {', '.join(AMP_MODES)} (or true / false), but got {value!r}.")
    return value


def frozen(value: Any) -> Any:
    """Lists become tuples, so that studies stay immutable and hashable."""
    return tuple(frozen(v) for v in value) if isinstance(value, list) else value


class StudyError(ValueError):
    """A study file problem, as one line: `<file>: <key path>: <what is wrong>; <the rule>`."""


@dataclass(frozen=True)
class DataConfig:
    """Which data set; `root` is the local archive directory (cifar only; `~` expanded)."""

    name: Literal["digits", "cifar10", "cifar100"]
    root: str | None = None
    seed: int = 0
    augment: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """How every trial trains; `epochs` is the full budget that pruners cut short."""

    epochs: int
    batch_size: int = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = 0
    amp: Literal["bf16", "fp16", "off"] = "bf16"  # a bool is read as bf16 / off (amp_mode)
    channels_last: bool = True
    compile: bool = False  # torch.compile the network (search.train_loop.Trainer)

    def __post_init__(self) -> None:
        object.__setattr__(self, "amp", amp_mode(self.amp))


@dataclass(frozen=True)
class ModelConfig:
    """The base network: a variant name from `gsa_space.networks` plus dotted-key overrides."""

    variant: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def overrides_dict(self) -> dict[str, Any]:
        return dict(self.overrides)


@dataclass(frozen=True)
class Variant:
    """One arm of an ablation: overrides of `model.variant`, network keys and `train.X`."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()

    def overrides_dict(self) -> dict[str, Any]:
        return dict(self.overrides)


@dataclass(frozen=True)
class Resources:
    """Ray resources per trial (fractional GPUs share one device)."""

    cpu: float = 1
    gpu: float = 0


@dataclass(frozen=True)
class SamplerConfig:
    """An Optuna sampler by name; `options` are passed to its constructor."""

    name: Literal["tpe", "random", "grid", "cmaes", "nsga2"]
    seed: int | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class PrunerConfig:
    """An Optuna pruner, Ray's ASHA (`asha`), or `none`; `options` go to its constructor."""

    name: Literal["median", "percentile", "successive_halving", "hyperband", "asha", "none"] = "none"
    options: tuple[tuple[str, Any], ...] = ()

    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class SearchConfig:
    """The search half of a `kind: search` study.

    `objectives` are (metric, "max"|"min") pairs in file order (two or more: multi-objective);
    `constraints` are (max_gmacs|max_params, limit) pairs enforced before a trial trains.
    """

    space: tuple["Dimension", ...]
    sampler: SamplerConfig
    num_samples: int
    objectives: tuple[tuple[str, str], ...]
    constraints: tuple[tuple[str, float], ...] = ()
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    max_rejections: int = 200

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def constraints_dict(self) -> dict[str, float]:
        return dict(self.constraints)


@dataclass(frozen=True)
class Study:
    """A whole study file, resolved: defaults filled, every value typed and checked."""

    name: str
    description: str
    kind: Literal["ablation", "search"]
    source: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    seeds: tuple[int, ...] = (0,)
    baseline: str | None = None
    variants: tuple[Variant, ...] = ()
    search: SearchConfig | None = None
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int = 1
    max_failures: int = 1  # retries of a raising trial from its last checkpoint before it counts as failed
    loggers: tuple[str, ...] = DEFAULT_LOGGERS  # Ray Tune logger callbacks, one of LOGGERS each

    def variant(self, name: str) -> Variant:
        """The variant called `name` (KeyError naming the known ones otherwise)."""
        for v in self.variants:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise KeyError(f"unknown variant {name!r} in study {self.name!r}; expected one of: {known}")


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs: the built network config and the training settings.

    `trial_key` is stable across runs (variant, seed and sampled values), so that a resumed
    run can match records; `params` are the sampled values (empty for ablations).
    """

    trial_key: str
    variant: str | None
    seed: int
    net: "NetConfig"
    train: TrainConfig
    params: tuple[tuple[str, Any], ...] = ()

    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)


def planned_trials(study: Study) -> list[tuple[str | None, int]]:
    """(variant, seed) pairs of an ablation, variants in file order then seeds; [] for a search."""
    if study.kind != "ablation":
        return []
    return [(v.name, s) for v in study.variants for s in study.seeds]
