"""Data sets as in-memory tensor splits, and augmentation as batched tensor ops.

`load_data(DataConfig)` returns train / val / test tensors (float32 NCHW, normalised with
train statistics; int64 labels): digits from scikit-learn (70/15/15, stratified, seeded),
CIFAR from the local archive (train split 90/10 into train/val, seeded; 45k/5k for the full set).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from search.study import DATASET_SHAPES, DataConfig

__all__ = ["DataSplits", "load_data", "augment_batch", "DATASET_SHAPES"]

VAL_FRACTION = 0.1  # of the CIFAR training files: 5,000 of 50,000


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train / val / test images (N, C, H, W) float32 and labels (N,) int64 of one data set."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    input_size: int
    in_chans: int
    num_classes: int
    class_names: tuple[str, ...] = ()

    def sizes(self) -> tuple[int, int, int]:
        """(train, val, test) image counts."""
        return self.x_train.shape[0], self.x_val.shape[0], self.x_test.shape[0]


def _normalise(train: np.ndarray, *others: np.ndarray) -> list[Tensor]:
    """Per-channel mean/std of `train` applied to every array; (N, C, H, W) float32 out."""
    mean = train.mean(axis=(0, 2, 3), keepdims=True)                        # (1, C, 1, 1)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-8                   # (1, C, 1, 1)
    return [torch.from_numpy(((a - mean) / std).astype(np.float32)) for a in (train, *others)]


def _labels(*arrays: np.ndarray) -> list[Tensor]:
    return [torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in arrays]


def load_digits_splits(cfg: DataConfig) -> DataSplits:
    """scikit-learn's 1,797 8x8 digits, scaled to [0, 1], split 70/15/15 stratified by `cfg.seed`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]                   # (1797, 1, 8, 8)
    y = bunch.target.astype(np.int64)                                       # (1797,)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.30, stratify=y, random_state=cfg.seed)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.50, stratify=y_rest,
                                              random_state=cfg.seed)
    x_tr, x_va, x_te = _normalise(x_tr, x_va, x_te)
    y_tr, y_va, y_te = _labels(y_tr, y_va, y_te)
    return DataSplits("digits", x_tr, y_tr, x_va, y_va, x_te, y_te, 8, 1, 10,
                      tuple(str(c) for c in bunch.target_names))


def val_size(n_train: int) -> int:
    """Validation images held out of `n_train` CIFAR training images: 10%, at least one."""
    if n_train < 2:
        raise ValueError(f"the CIFAR training files hold {n_train} image(s); a train/val split needs at least 2")
    return max(1, int(round(n_train * VAL_FRACTION)))


def load_cifar_splits(cfg: DataConfig) -> DataSplits:
    """CIFAR-10/100 from `cfg.root`: a seeded 90/10 train/val split of the training files, the test file."""
    from search.cifar import find_archive, read_archive, read_class_names

    if cfg.root is None:
        raise ValueError(f"data.root=None: {cfg.name} is read from a local archive; set data.root")
    archive = find_archive(cfg.root, cfg.name)
    x_all, y_all, x_te, y_te = read_archive(archive)                        # uint8 (N, 3, 32, 32)
    n_val = val_size(len(y_all))
    order = np.random.default_rng(cfg.seed).permutation(len(y_all))         # (N,)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    x_tr, x_va, x_te = _normalise(*(a.astype(np.float32) / 255.0 for a in (x_all[train_idx], x_all[val_idx], x_te)))
    y_tr, y_va, y_te = _labels(y_all[train_idx], y_all[val_idx], y_te)
    size, chans, classes = DATASET_SHAPES[cfg.name]
    return DataSplits(cfg.name, x_tr, y_tr, x_va, y_va, x_te, y_te, size, chans, classes,
                      read_class_names(archive))


def load_data(cfg: DataConfig) -> DataSplits:
    """The splits of `cfg.name`; missing or corrupt files raise one-line FileNotFoundError/ValueError.

    Example: `load_data(DataConfig("digits")).sizes() == (1257, 270, 270)`.
    """
    if cfg.name == "digits":
        return load_digits_splits(cfg)
    if cfg.name in ("cifar10", "cifar100"):
        return load_cifar_splits(cfg)
    raise ValueError(f"data.name={cfg.name!r} is not a known data set; expected one of: {', '.join(DATASET_SHAPES)}")


def augment_batch(x: Tensor, generator: torch.Generator | None = None, *, pad: int = 4,
                  flip: bool = True) -> Tensor:
    """Random crop with `pad` zero padding and random horizontal flip, per image, on x's device.

    One gather for the whole batch: each image's crop offsets (and flip) become row and column
    index grids into the padded batch. Returns (B, C, H, W), laid out channels-last in memory.
    """
    b, c, h, w = x.shape
    dev = x.device
    xp = F.pad(x, (pad, pad, pad, pad))                                     # (B, C, H+2p, W+2p)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)   # (B,)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)   # (B,)
    rows = dy[:, None] + torch.arange(h, device=dev)                        # (B, H)
    cols = torch.arange(w, device=dev).expand(b, w)                          # (B, W)
    if flip:
        flipped = torch.rand(b, generator=generator, device=dev) < 0.5       # (B,)
        cols = torch.where(flipped[:, None], (w - 1) - cols, cols)           # (B, W)
    cols = dx[:, None] + cols                                                # (B, W)
    batch = torch.arange(b, device=dev)[:, None, None]                      # (B, 1, 1)
    out = xp[batch, :, rows[:, :, None], cols[:, None, :]]                  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)                                           # (B, C, H, W)
