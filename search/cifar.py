"""Read CIFAR-10 / CIFAR-100 from the user's copy of the python-pickle archives.

Layouts: `cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta) and
`cifar-100-python/` (train, test, meta); `root` may be that folder or its parent.
Every problem is one line naming the path and what is missing or wrong.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
LABEL_KEYS = {"cifar10": b"labels", "cifar100": b"fine_labels"}
META = {"cifar10": ("batches.meta", b"label_names"), "cifar100": ("meta", b"fine_label_names")}
PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarArchive:
    """Where the pieces of one archive are: train files in order, the test file, the meta file."""

    name: str
    folder: Path
    train_files: tuple[Path, ...]
    test_file: Path
    meta_file: Path


def find_archive(root: str | Path, name: str) -> CifarArchive:
    """Locate the archive of `name` under `root` (the folder itself or its parent); reads nothing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory; expected the {name} python archive "
                                f"({FOLDERS[name]}/) there")
    folder = root / FOLDERS[name] if (root / FOLDERS[name]).is_dir() else root
    if name == "cifar10":
        batches = sorted(folder.glob("data_batch_*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        numbers = [int(re.sub(r"\D", "", p.name) or 0) for p in batches]
        if numbers != list(range(1, len(numbers) + 1)) or not numbers:
            raise FileNotFoundError(f"{folder}: expected data_batch_1..data_batch_5 of {FOLDERS[name]}, but found "
                                    f"{[p.name for p in batches] or 'none'}; point data.root at the extracted archive")
        train, test, meta = tuple(batches), folder / "test_batch", folder / "batches.meta"
    else:
        train, test, meta = (folder / "train",), folder / "test", folder / "meta"
    for path in (*train, test, meta):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing file of the {name} archive ({FOLDERS[name]}/); "
                                    f"point data.root at the extracted archive")
    return CifarArchive(name=name, folder=folder, train_files=train, test_file=test, meta_file=meta)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # a damaged file raises anything from EOFError to UnpicklingError
        raise ValueError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err}); "
                         f"re-extract the archive") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR pickle holds a dict, but this one holds {type(obj).__name__}")
    return obj


def read_batch(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one pickle file, shapes checked."""
    obj = _unpickle(path)
    label_key = LABEL_KEYS[name]
    for key in (b"data", label_key):
        if key not in obj:
            raise ValueError(f"{path}: no {key.decode()!r} entry; keys are {sorted(k.decode() for k in obj)}")
    data = np.asarray(obj[b"data"])
    labels = np.asarray(obj[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise ValueError(f"{path}: 'data' is {data.dtype} of shape {data.shape}, but CIFAR stores "
                         f"uint8 rows of {PIXELS} pixels (N, 3072)")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images; they must match")
    classes = NUM_CLASSES[name]
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{path}: labels span {labels.min()}..{labels.max()}, but {name} has classes 0..{classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels


def read_class_names(archive: CifarArchive) -> tuple[str, ...]:
    meta = _unpickle(archive.meta_file)
    key = META[archive.name][1]
    names = meta.get(key)
    if names is None:
        raise ValueError(f"{archive.meta_file}: no {key.decode()!r} entry; re-extract the archive")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def read_archive(archive: CifarArchive) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) as uint8 (N, 3, 32, 32) and int64 (N,)."""
    parts = [read_batch(p, archive.name) for p in archive.train_files]
    x_train = np.concatenate([x for x, _ in parts])
    y_train = np.concatenate([y for _, y in parts])
    x_test, y_test = read_batch(archive.test_file, archive.name)
    return x_train, y_train, x_test, y_test
