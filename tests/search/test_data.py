"""Tests of search.data / search.cifar: digits splits, small CIFAR archives written here, augmentation."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from search.data import augment_batch, load_data, val_size
from search.study import DataConfig


def _images(n: int, offset: int) -> tuple[np.ndarray, list[int]]:
    """n CIFAR rows whose first pixel encodes the image number; label = number % 10."""
    data = np.random.default_rng(offset).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(offset, offset + n) % 256
    return data, [int(i % 10) for i in range(offset, offset + n)]


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, batches: int = 2, per_batch: int = 20, test: int = 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(batches):
        data, labels = _images(per_batch, b * per_batch)
        _dump(folder / f"data_batch_{b + 1}", {b"batch_label": b"training batch", b"data": data, b"labels": labels})
    data, labels = _images(test, 200)
    _dump(folder / "test_batch", {b"data": data, b"labels": labels})
    _dump(folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})
    return folder


def write_cifar100(root: Path, train: int = 40, test: int = 10) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n, off in (("train", train, 0), ("test", test, 200)):
        data, labels = _images(n, off)
        fine = [lab * 10 + 7 for lab in labels]
        _dump(folder / name, {b"data": data, b"fine_labels": fine, b"coarse_labels": labels})
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    return folder


def test_load_data_digits_split_sizes_and_types() -> None:
    d = load_data(DataConfig("digits"))
    assert d.sizes() == (1257, 270, 270)
    assert d.x_train.shape == (1257, 1, 8, 8) and d.x_train.dtype == torch.float32
    assert d.y_val.dtype == torch.int64
    assert (d.input_size, d.in_chans, d.num_classes) == (8, 1, 10)
    assert float(d.x_train.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(d.x_train.std()) == pytest.approx(1.0, abs=1e-3)


def test_load_data_digits_is_stratified() -> None:
    d = load_data(DataConfig("digits"))
    counts = torch.bincount(d.y_test, minlength=10)
    assert int(counts.min()) >= 26 and int(counts.max()) <= 28


def test_load_data_digits_seed_decides_split() -> None:
    a, b, c = (load_data(DataConfig("digits", seed=s)) for s in (0, 0, 1))
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


@pytest.mark.parametrize("point_at", ["folder", "parent"])
def test_load_data_cifar10_small_archive(tmp_path: Path, point_at: str) -> None:
    folder = write_cifar10(tmp_path)
    d = load_data(DataConfig("cifar10", root=str(folder if point_at == "folder" else tmp_path), seed=0))
    assert d.sizes() == (36, 4, 10)
    assert d.x_train.shape == (36, 3, 32, 32) and d.x_test.dtype == torch.float32
    assert d.class_names[:2] == ("class0", "class1")
    assert (d.input_size, d.in_chans, d.num_classes) == (32, 3, 10)
    assert sorted(d.y_test.tolist()) == sorted(i % 10 for i in range(200, 210))


def test_load_data_cifar_labels_follow_images(tmp_path: Path) -> None:
    d = load_data(DataConfig("cifar10", root=str(write_cifar10(tmp_path)), seed=3))
    # Undo the normalisation of channel 0 to read each image's number from its first pixel.
    x_all = torch.cat([d.x_train, d.x_val])[:, 0, 0, 0]
    y_all = torch.cat([d.y_train, d.y_val])
    order = torch.argsort(x_all)
    assert y_all[order].tolist() == [i % 10 for i in range(40)]


def test_load_data_cifar_seed_decides_val(tmp_path: Path) -> None:
    root = str(write_cifar10(tmp_path))
    a, b = (load_data(DataConfig("cifar10", root=root, seed=s)) for s in (0, 1))
    assert not torch.equal(a.x_val, b.x_val)


def test_load_data_cifar100_fine_labels(tmp_path: Path) -> None:
    d = load_data(DataConfig("cifar100", root=str(write_cifar100(tmp_path))))
    assert d.sizes() == (36, 4, 10)
    assert d.num_classes == 100
    assert set(torch.cat([d.y_train, d.y_val]).tolist()) == {lab * 10 + 7 for lab in range(10)}


def test_val_size_full_cifar_is_five_thousand() -> None:
    assert (val_size(50_000), val_size(40), val_size(3)) == (5_000, 4, 1)


def test_load_data_cifar_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope: no such directory"):
        load_data(DataConfig("cifar10", root=str(tmp_path / "nope")))


def test_load_data_cifar_missing_test_file(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_batch: missing file of the cifar10 archive"):
        load_data(DataConfig("cifar10", root=str(tmp_path)))


def test_load_data_cifar_gap_in_batches(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, batches=3)
    (folder / "data_batch_2").unlink()
    with pytest.raises(FileNotFoundError, match=r"found \['data_batch_1', 'data_batch_3'\]"):
        load_data(DataConfig("cifar10", root=str(tmp_path)))


def test_load_data_cifar_corrupt_pickle(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"data_batch_2: not a readable CIFAR pickle \(\w+"):
        load_data(DataConfig("cifar10", root=str(tmp_path)))


def test_load_data_cifar_wrong_shape(tmp_path: Path) -> None:
    folder = write_cifar100(tmp_path)
    _dump(folder / "test", {b"data": np.zeros((5, 1024), np.uint8), b"fine_labels": [0] * 5})
    with pytest.raises(ValueError, match=r"test: 'data' is uint8 of shape \(5, 1024\), but CIFAR stores"):
        load_data(DataConfig("cifar100", root=str(tmp_path)))


def test_load_data_cifar_label_out_of_range(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]})
    with pytest.raises(ValueError, match=r"labels span 3..10, but cifar10 has classes 0..9"):
        load_data(DataConfig("cifar10", root=str(tmp_path)))


def _augment_reference(x: torch.Tensor, seed: int, pad: int) -> torch.Tensor:
    """Per-image loop drawing the same random numbers in the same order as augment_batch."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    out = []
    for i in range(b):
        img = F.pad(x[i], (pad, pad, pad, pad))[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out.append(img.flip(-1) if flip[i] else img)
    return torch.stack(out)


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_augment_batch_matches_per_image_reference(pad: int) -> None:
    x = torch.randn(16, 3, 8, 6)
    got = augment_batch(x, torch.Generator().manual_seed(5), pad=pad)
    assert got.shape == (16, 3, 8, 6)
    assert torch.equal(got, _augment_reference(x, 5, pad))


def test_augment_batch_same_generator_seed_same_output() -> None:
    x = torch.randn(8, 3, 32, 32)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    c = augment_batch(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
