"""Ray Tune's logger callbacks through `loggers:`, end to end: one small ablation run through the
`gsa-nas run` CLI with loggers [csv, tensorboard, mlflow, wandb] backs every test (about 1.5 min on
2 cores): ExperimentAnalysis sees every epoch, TensorBoard event files, MLflow runs in the run's
SQLite store and offline W&B runs read back, W&B never contacts a server, and the run's log has
the progress lines a person plans by.
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NAME = "trk"  # the run's name differs from the study's (quickstart): the progress prefix is the run's
SETS = ["train.epochs=2", "seeds=[0]", "max_concurrent=2", "variants={both: {}, conv: {model.variant: resnet_tiny}}",
        "loggers=[csv, tensorboard, mlflow, wandb]"]


class Listener(threading.Thread):
    """A local socket that counts connections: W&B's server URL points here during the run."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.connections = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    listener = Listener()
    listener.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_CODE="true",
               WANDB_BASE_URL=f"http://127.0.0.1:{listener.sock.getsockname()[1]}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "search.cli", "run", "quickstart", "--out", str(out), "--name", NAME, "--no-report"]
    for item in SETS:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=480, env=env, cwd=out)
    listener.stop.set()
    listener.join()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return {"dir": out / NAME, "stdout": proc.stdout, "stderr": proc.stderr, "connections": listener.connections}


def session_dir(run) -> Path:
    return run["dir"] / "tune" / "session_1"


def epochs_by_key(run) -> dict[str, int]:
    frame = pd.read_csv(run["dir"] / "results.csv")
    return dict(zip(frame["trial_id"], frame["epochs"]))


def tfevents_scalars(path: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of `tag` in a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    data, pos, out = Path(path).read_bytes(), 0, []
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        out += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return out


def wandb_history(path: str, key: str) -> list[float]:
    """Values of `key` in the history records of an offline W&B run file (LevelDB-style log blocks)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, chunk, out = Path(path).read_bytes(), 7, b"", []  # after the ':W&B' file header
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
                if key in items:
                    out.append(float(items[key]))
    return out


def wandb_logs(counts: dict[str, int]) -> str:
    """Each offline run's history count and the end of its W&B logs: what a failure needs to be read."""
    out = []
    for path, count in counts.items():
        out.append(f"{path}: {count} val_acc records")
        for log in sorted(Path(path).parent.glob("logs/debug*.log")):
            out += [f"--- {log.name}", *log.read_text(errors="replace").splitlines()[-25:]]
    return "\n".join(out)


def test_trackers_experiment_analysis_has_every_epoch_of_each_trial(run):
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(session_dir(run).resolve()))
    frames = {df["trial_id"].iloc[0]: df for df in analysis.trial_dataframes.values()}
    epochs = {key: list(frames[t.trial_id]["epoch"]) for t in analysis.trials
              for key in [t.config["trial_key"]]}
    assert epochs == {key: list(range(1, n + 1)) for key, n in epochs_by_key(run).items()}
    assert len(analysis.dataframe()) == 2


def test_trackers_tensorboard_event_files_hold_val_acc_per_epoch(run):
    curves = pd.read_csv(run["dir"] / "curves.csv")
    for trial_dir in sorted(session_dir(run).glob("*_*/")):
        key = trial_dir.name.rsplit("_", 1)[0]
        (events,) = glob.glob(str(trial_dir / "events.out.tfevents.*"))
        expected = curves[curves["trial_id"] == key].sort_values("epoch")
        scalars = tfevents_scalars(events, "ray/tune/val_acc")
        assert [step for step, _ in scalars] == list(expected["epoch"])
        assert [v for _, v in scalars] == pytest.approx(list(expected["val_acc"]), abs=1e-6)


def test_trackers_mlflow_runs_read_back_from_the_run_directory_store(run):
    import mlflow

    uri = f"sqlite:///{(run['dir'] / 'mlflow.db').resolve()}"  # the default store: inside the run directory
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=[NAME])
        client = mlflow.MlflowClient(uri)
        history = {row["params.trial_key"]: [m.step for m in client.get_metric_history(row["run_id"], "val_acc")]
                   for _, row in runs.iterrows()}
    finally:
        mlflow.set_tracking_uri(before)
    assert set(runs["status"]) == {"FINISHED"}
    assert history == {key: list(range(1, n + 1)) for key, n in epochs_by_key(run).items()}


def test_trackers_wandb_offline_runs_in_the_run_directory_without_network(run):
    files = sorted(glob.glob(str(run["dir"] / "wandb" / "offline-run-*" / "run-*.wandb")))
    assert len(files) == 2
    counts = {f: len(wandb_history(f, "val_acc")) for f in files}
    assert sorted(counts.values()) == sorted(epochs_by_key(run).values()), wandb_logs(counts)
    assert run["connections"] == 0  # nothing reached the W&B server URL


def test_trackers_progress_log_lines_name_the_run_and_plan_epochs(run):
    lines = [line for line in run["stdout"].splitlines() if line.startswith("[")]
    assert lines and all(line.startswith(f"[{NAME}] ") for line in lines)
    assert "\r" not in run["stdout"]  # a log gets whole lines, never rewrites
    wall_s = json.loads((run["dir"] / "run.json").read_text())["wall_s"]
    assert len(lines) <= 2 + int(wall_s // 60) + 1  # a line per finished trial, and at most one a minute besides
    assert re.search(r"\| epochs 4/4 \|.*ETA 0s$", lines[-1])
    assert lines[-1].startswith(f"[{NAME}] 2/2 done (2 complete")


def test_trackers_stay_quiet_on_the_terminal(run):
    assert "MLflow database tables" not in run["stderr"]  # MLflow's store set-up notes are muted
    assert "wandb:" not in run["stdout"] + run["stderr"]  # W&B is silent offline
