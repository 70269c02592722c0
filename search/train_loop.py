"""The training loop every trial runs: pure PyTorch, no Ray.

A `Trainer` turns a `TrialSpec` and in-memory `DataSplits` into epochs of training and
validation, seeded from the spec (the data order of epoch e from (seed, e)), so a trainer
restored after epoch k repeats epochs k+1.. of an uninterrupted run exactly on the CPU.
On CUDA it trains in `train.amp` mixed precision (bf16, or fp16 with a gradient scaler) and in
`train.channels_last`; on the CPU in float32 NCHW unless told `autocast_on_cpu`. With
`train.compile` the network runs through `torch.compile` (`compile_backend`, inductor by default).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gsa_space.networks import build_net
from search.data import DataSplits, augment_batch
from search.optim import build_optimizer, lr_at, set_lr
from search.worker import allow_recompiles, configure_process

if TYPE_CHECKING:
    from search.study import TrialSpec

__all__ = ["EpochResult", "DivergedError", "Trainer", "save_checkpoint", "load_checkpoint", "run_trial_bare"]

EVAL_BATCH = 1024
DIVERGENCE_CHECK_EVERY = 50  # steps between non-finite loss checks (one host sync each)
AMP_DTYPES: dict[str, torch.dtype | None] = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochResult:
    """What one epoch reports; `epoch` is 1-based, `seconds` covers training and validation."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    lr: float
    images_per_sec: float
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def _epoch_seed(seed: int, epoch: int) -> int:
    # One stream per (seed, epoch): a resumed run draws the same order as a fresh one.
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains `spec.net` on `data` for `spec.train.epochs` epochs, one `train_epoch()` at a time.

    Args:
        spec: a `TrialSpec` (seed, net, train).
        data: `DataSplits` (x_/y_ train, val, test tensors, `name`).
        device: where the model and the whole data set live.
        augment: pad-crop + flip on CIFAR batches (`DataConfig.augment`); ignored for digits.
        model_factory: builds the module from `spec.net` (default `gsa_space.networks.build_net`).
        autocast_on_cpu: on the CPU too, train as on CUDA: autocast to `train.amp` (fp16 with a
            `torch.amp.GradScaler`) and `train.channels_last`. Off by default: the CPU trains in
            float32 NCHW, which is faster there and what the quickstart's numbers come from.
        compile_backend: the `torch.compile` backend used when `train.compile` is on ("inductor";
            tests take "aot_eager", which compiles in seconds on 2 cores).

    Example:
        >>> trainer = Trainer(spec, load_data(DataConfig("digits")))
        >>> results = [trainer.train_epoch() for _ in range(spec.train.epochs)]
    """

    def __init__(self, spec: TrialSpec, data: DataSplits, *, device: str | torch.device = "cpu",
                 augment: bool = True, model_factory: Callable[[Any], nn.Module] | None = None,
                 autocast_on_cpu: bool = False, compile_backend: str = "inductor") -> None:
        self.spec, self.train_cfg, self.seed = spec, spec.train, int(spec.seed)
        for name in ("epochs", "batch_size"):
            value = getattr(self.train_cfg, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"train.{name} must be a positive integer, but got train.{name}={value!r}.")
        self.device = torch.device(device)
        as_on_cuda = self.device.type == "cuda" or (bool(autocast_on_cpu) and self.device.type == "cpu")
        # The autocast dtype of forward passes (None: float32); parameters and their gradients stay float32.
        self.amp_dtype = AMP_DTYPES[self.train_cfg.amp] if as_on_cuda else None
        channels_last = bool(self.train_cfg.channels_last) and as_on_cuda
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # float16 overflows where bfloat16 does not: scale the loss, skip steps with inf/NaN gradients.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp_dtype == torch.float16 else None
        self.augment = bool(augment) and str(data.name).startswith("cifar")

        with torch.random.fork_rng(devices=[]):  # the weights follow the seed; the global RNG is left alone
            torch.manual_seed(self.seed)
            self.model = (model_factory or build_net)(spec.net).to(self.device, memory_format=self.memory_format)
        # Forward passes go through the compiled module; weights, checkpoints and the optimizer stay
        # on `model` itself (its state_dict keys carry no `_orig_mod.` prefix). Dynamo inlines
        # nn.Module calls, so a later trial of the same architecture in this worker reuses the
        # compiled graphs; another architecture hits inductor's on-disk cache.
        self.net: nn.Module | Callable[[Tensor], Tensor] = self.model
        if self.train_cfg.compile:
            allow_recompiles()
            self.net = torch.compile(self.model, backend=compile_backend)
        self.optimizer = build_optimizer(self.model, self.train_cfg)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=float(self.train_cfg.label_smoothing))

        # The whole data set moves to the device once, images already in the model's layout.
        self.x_train, self.y_train = self._put(data.x_train), self._put(data.y_train)  # (N, C, H, W), (N,)
        self.x_val, self.y_val = self._put(data.x_val), self._put(data.y_val)
        self.x_test, self.y_test = self._put(data.x_test), self._put(data.y_test)
        n_train = int(self.x_train.shape[0])
        if n_train == 0:
            raise ValueError(f"data.x_train must hold at least one image, but got {tuple(self.x_train.shape)}.")
        self.batch_size = min(int(self.train_cfg.batch_size), n_train)
        self.steps_per_epoch = n_train // self.batch_size   # the last partial batch is dropped
        self.total_steps = self.steps_per_epoch * int(self.train_cfg.epochs)
        self.warmup_steps = self.steps_per_epoch * int(self.train_cfg.warmup_epochs)
        lr_at(0, base_lr=self.train_cfg.lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
              schedule=self.train_cfg.schedule)  # validates the schedule before any training

        self.step = 0
        self.history: list[EpochResult] = []
        self.best_val_acc = float("-inf")
        self.best_epoch = 0

    def _put(self, t: Tensor) -> Tensor:
        t = t.to(self.device)
        return t.contiguous(memory_format=self.memory_format) if t.ndim == 4 else t

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return len(self.history)

    def _lr(self, step: int) -> float:
        return lr_at(step, base_lr=self.train_cfg.lr, total_steps=self.total_steps,
                     warmup_steps=self.warmup_steps, schedule=self.train_cfg.schedule)

    def _forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=self.memory_format)                   # (B, C, H, W)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16,
                            enabled=self.amp_dtype is not None):
            return self.net(x)                                                 # (B, classes)

    def _batches(self, epoch: int) -> tuple[Tensor, torch.Generator | None]:
        gen = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        order = torch.randperm(self.x_train.shape[0], generator=gen).to(self.device)  # (N,)
        aug_gen = None
        if self.augment:
            aug_gen = torch.Generator(device=self.device).manual_seed(_epoch_seed(self.seed, epoch) + 1)
        return order, aug_gen

    def train_epoch(self) -> EpochResult:
        """Train one epoch over shuffled data, then validate; raises `DivergedError` on NaN/inf loss."""
        if self.epoch >= self.train_cfg.epochs:
            raise RuntimeError(f"all train.epochs={self.train_cfg.epochs} epochs are done; nothing left to train.")
        epoch = self.epoch + 1
        start = time.perf_counter()
        self.model.train()
        order, aug_gen = self._batches(epoch)
        losses = torch.zeros(self.steps_per_epoch, device=self.device)          # (S,)
        bs, checked = self.batch_size, 0
        for i in range(self.steps_per_epoch):
            idx = order[i * bs:(i + 1) * bs]                                   # (B,)
            x, y = self.x_train[idx], self.y_train[idx]                        # (B, C, H, W), (B,)
            if aug_gen is not None:

                x = augment_batch(x, aug_gen)
            set_lr(self.optimizer, self._lr(self.step))
            loss = self.criterion(self._forward(x).float(), y)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)                              # unscales; skips inf/NaN steps
                self.scaler.update()
            self.step += 1
            losses[i] = loss.detach()
            if (i + 1) % DIVERGENCE_CHECK_EVERY == 0 or i + 1 == self.steps_per_epoch:
                self._check_finite(losses[checked:i + 1], epoch, first_step=checked + 1)
                checked = i + 1
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - start
        train_loss = float(losses.mean().item())
        val_loss, val_acc = self._evaluate(self.x_val, self.y_val)
        result = EpochResult(
            epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_acc=val_acc,
            lr=self._lr(self.step - 1), images_per_sec=self.steps_per_epoch * bs / max(train_seconds, 1e-9),
            seconds=time.perf_counter() - start,
        )
        self.history.append(result)
        if val_acc > self.best_val_acc:
            self.best_val_acc, self.best_epoch = val_acc, epoch
        return result

    def _check_finite(self, losses: Tensor, epoch: int, *, first_step: int) -> None:
        bad = (~torch.isfinite(losses)).nonzero()                              # (K, 1)
        if bad.numel():
            k = int(bad[0, 0])
            raise DivergedError(
                f"diverged: loss={float(losses[k])} at epoch {epoch}, step {first_step + k} "
                f"(lr={self._lr(self.step - len(losses) + k):.3g}); lower train.lr or add warm-up"
            )

    @torch.no_grad()
    def _evaluate(self, x_all: Tensor, y_all: Tensor) -> tuple[float, float]:
        """(mean cross-entropy without label smoothing, accuracy) in eval mode."""
        self.model.eval()
        n = int(x_all.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for s in range(0, n, EVAL_BATCH):
            x, y = x_all[s:s + EVAL_BATCH], y_all[s:s + EVAL_BATCH]            # (B, C, H, W), (B,)
            logits = self._forward(x).float()                                  # (B, classes)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
        return float(loss_sum.item()) / n, int(correct.item()) / n

    def validate(self) -> tuple[float, float]:
        """(val_loss, val_acc) of the current weights."""
        return self._evaluate(self.x_val, self.y_val)

    def test(self) -> float:
        """Accuracy on the test split (reported, never used for selection)."""
        return self._evaluate(self.x_test, self.y_test)[1]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed trainer needs: weights, optimizer, step, history, best, RNG states,
        and the gradient scaler's state when it trains in fp16."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": [r.as_dict() for r in self.history],
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "rng": _rng_state(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()` taken from a trainer built from the same spec."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.history = [EpochResult(**r) for r in state["history"]]
        self.best_val_acc, self.best_epoch = float(state["best_val_acc"]), int(state["best_epoch"])
        if self.step != self.epoch * self.steps_per_epoch:
            raise ValueError(
                f"checkpoint step={self.step} does not match epoch={self.epoch} x steps_per_epoch="
                f"{self.steps_per_epoch}; it was saved for another batch size or data split."
            )
        _set_rng_state(state["rng"])


def save_checkpoint(trainer: Trainer, path: str | os.PathLike) -> Path:
    """Write `trainer.state_dict()` to `path` atomically (a temporary file, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(trainer.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(trainer: Trainer, path: str | os.PathLike) -> Trainer:
    """Restore `trainer` from a file written by `save_checkpoint`; returns the trainer."""
    # On the CPU first: RNG states must be CPU tensors; load_state_dict moves the rest.
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    trainer.load_state_dict(state)
    return trainer


def run_trial_bare(spec: Any, data: Any, *, epochs: int | None = None, device: str | torch.device = "cpu",
                   threads: int | None = None, augment: bool = True,
                   model_factory: Callable[[Any], nn.Module] | None = None) -> list[EpochResult]:
    """Train `spec` outside any harness, as a trial with `epochs` epochs (default spec.train.epochs) would.

    The harness benchmark compares its trials against this loop to measure overhead.
    """
    if epochs is not None:
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, epochs=int(epochs)))
    configure_process(threads=threads, device=device)
    trainer = Trainer(spec, data, device=device, augment=augment, model_factory=model_factory)
    return [trainer.train_epoch() for _ in range(spec.train.epochs)]
