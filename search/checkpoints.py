"""Trial checkpoints: the storage they go to, what a checkpoint holds, and how one is found and loaded.

A run's storage path (`gsa-nas run --storage-path`) is a local directory or shared mount, or any
URI pyarrow.fs reads (`s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http`); credentials
come from the standard AWS environment variables of each node, never from the URI, so no file
and no pickled filesystem holds them. Ray Tune writes each checkpoint directory there; this
module owns what is in it (`trainer.pt`), how a recorded checkpoint URI is read back on any
node, and what becomes of one that cannot be loaded: set aside as `trainer.pt.bad`, and the
trial starts again from epoch 0 with the reason said. No Ray here.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from reports.run_dir import TUNE_DIR
from search.train_loop import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from search.train_loop import Trainer

__all__ = ["BAD_SUFFIX", "CHECKPOINT_FILE", "CheckpointRejected", "check_storage_path", "checkpoint_uri", "is_local",
           "list_sessions", "load_trainer", "load_trainer_from_uri", "save_trainer", "storage_root"]

CHECKPOINT_FILE = "trainer.pt"
BAD_SUFFIX = ".bad"
# pyarrow reads these from a URI's query; they would then travel in every pickled filesystem
SECRET_PARAMS = ("access_key", "secret_key", "session_token")


class CheckpointRejected(RuntimeError):
    """A checkpoint that cannot be loaded (already set aside); the message is the trial's reason."""


def is_local(uri: str) -> bool:
    """Whether a storage path is a directory path (only the nodes that mount it see it), not a URI."""
    scheme = urlsplit(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1  # a Windows drive letter is not a scheme


def check_storage_path(uri: str) -> str:
    """The storage path to give Ray Tune: an absolute local path, or the URI as given.

    Raises ValueError naming the URI when it carries credentials or pyarrow cannot open it.
    Example: `check_storage_path("runs/q/tune")` -> "/abs/runs/q/tune".
    """
    if is_local(uri):
        return str(Path(uri.removeprefix("file://")).expanduser().resolve())
    secret = sorted({k for k, _ in parse_qsl(urlsplit(uri).query)} & set(SECRET_PARAMS))
    if secret:
        raise ValueError(f"--storage-path: the URI carries {', '.join(secret)}; credentials come only from the "
                         f"AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) of every node, "
                         f"so that none is written into the run; remove {secret[0]}=... from the URI")
    try:
        pafs.FileSystem.from_uri(uri)
    except Exception as err:  # noqa: BLE001 - pyarrow raises ValueError, OSError or ArrowInvalid
        detail = " ".join(str(err).split())
        raise ValueError(f"--storage-path {uri}: pyarrow cannot open it ({detail}); give a local directory "
                         f"or a URI such as s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http") from None
    return uri


def storage_root(run_dir: Path, storage_path: str | None) -> str:
    """Where a run's Tune experiments go: its `--storage-path`, else RUN_DIR/tune (absolute)."""
    return storage_path or str((run_dir / TUNE_DIR).resolve())


def checkpoint_uri(storage_path: str, fs_path: str) -> str:
    """The URI of `fs_path` (a path on the filesystem of `storage_path`, as Ray Tune's
    `Checkpoint.path` gives it) that any node can open: the storage's scheme and query kept."""
    if is_local(storage_path):
        return fs_path
    parts = urlsplit(storage_path)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{fs_path.lstrip('/')}{query}"


def list_sessions(storage_path: str) -> list[str]:
    """Names of the Tune experiments (`session_N`) already under `storage_path`."""
    if is_local(storage_path):
        root = Path(storage_path)
        return sorted(p.name for p in root.glob("session_*")) if root.is_dir() else []
    fs, root = pafs.FileSystem.from_uri(storage_path)
    infos = fs.get_file_info(pafs.FileSelector(root, allow_not_found=True))
    return sorted(Path(i.path).name for i in infos if i.type == pafs.FileType.Directory
                  and Path(i.path).name.startswith("session_"))


def save_trainer(trainer: Trainer, directory: str | Path) -> Path:
    """Write the trainer's state into a checkpoint directory (Tune's `checkpoint_dir`)."""
    return save_checkpoint(trainer, Path(directory) / CHECKPOINT_FILE)


def load_trainer(trainer: Trainer, directory: str | Path) -> Trainer:
    """Restore `trainer` from a checkpoint directory on this node.

    A file that is missing, corrupt, refused by `torch.load(weights_only=True)` or made for another
    trial is renamed `trainer.pt.bad` and CheckpointRejected is raised; `trainer` may then be
    half-restored, so the caller builds a fresh one.
    """
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointRejected(f"checkpoint rejected: no {CHECKPOINT_FILE} in {directory}; trained from epoch 0")
    try:
        return load_checkpoint(trainer, path)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is set aside, never fatal
        _set_aside_local(path)
        raise CheckpointRejected(_reason(path, err)) from err


def load_trainer_from_uri(trainer: Trainer, uri: str) -> Trainer:
    """Restore `trainer` from the checkpoint directory at `uri` (local path or pyarrow URI).

    A remote checkpoint is downloaded to a temporary directory first; one that cannot be loaded
    is renamed `trainer.pt.bad` where it is stored, and CheckpointRejected is raised.
    """
    if is_local(uri):
        return load_trainer(trainer, uri)
    fs, root = pafs.FileSystem.from_uri(uri)
    source = f"{root.rstrip('/')}/{CHECKPOINT_FILE}"
    if fs.get_file_info(source).type != pafs.FileType.File:
        raise CheckpointRejected(f"checkpoint rejected: no {CHECKPOINT_FILE} at {uri}; trained from epoch 0")
    scratch = Path(tempfile.mkdtemp(prefix="gsa-nas-ckpt-"))
    try:
        pafs.copy_files(source, str(scratch / CHECKPOINT_FILE), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        try:
            return load_checkpoint(trainer, scratch / CHECKPOINT_FILE)
        except Exception as err:  # noqa: BLE001 - as in load_trainer
            fs.move(source, source + BAD_SUFFIX)
            raise CheckpointRejected(_reason(uri, err)) from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _set_aside_local(path: Path) -> None:
    try:
        path.rename(path.with_name(path.name + BAD_SUFFIX))
    except OSError:
        pass  # a read-only copy: the reason still travels with the trial


def _reason(where: Path | str, err: BaseException) -> str:
    text = str(err)
    refused = [ln for ln in text.splitlines() if "WeightsUnpickler error" in ln]
    if refused:  # torch's message opens with a page on weights_only; its one telling line is this
        text = f"refused by torch.load(weights_only=True): {refused[0].strip()}"
    detail = " ".join(text.split())[:300] or type(err).__name__
    return (f"checkpoint rejected: {where} could not be loaded ({type(err).__name__}: {detail}); "
            f"set aside as {CHECKPOINT_FILE}{BAD_SUFFIX}, trained from epoch 0")
