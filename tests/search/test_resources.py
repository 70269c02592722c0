"""One trial's resources against what exists: refused before launch, never trained elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from search.resources import Available, capacity, check_placeable
from search.study import load_study
from search.tune.trainable import trial_device

ROOT = Path(__file__).resolve().parents[2]


def test_check_placeable_refuses_a_gpu_trial_on_a_cpu_machine():
    study = load_study("quickstart", {"resources": {"cpu": 1, "gpu": 0.5}})
    with pytest.raises(ValueError) as err:
        check_placeable(study, Available(cpu=2, gpu=0, where="this machine"))
    assert str(err.value) == (f"{study.source}: resources.gpu: a trial asks for 0.5 GPUs, but this machine has 0 GPUs, "
                              f"so no trial could ever start; give a CUDA machine or join a cluster with GPU workers "
                              f"(--address), or set resources.gpu=0 to train on CPUs")


def test_check_placeable_refuses_more_cpus_than_the_largest_node():
    study = load_study("quickstart", {"resources": {"cpu": 4}})
    with pytest.raises(ValueError, match=r"resources.cpu: a trial asks for 4 CPUs, but node x has 2 CPUs.*at most 2$"):
        check_placeable(study, Available(cpu=2, gpu=0, where="node x"))


def test_check_placeable_and_capacity_of_fractional_gpus():
    study = load_study("quickstart", {"resources": {"cpu": 1, "gpu": 0.5}})
    check_placeable(study, Available(cpu=16, gpu=1, where="h100"))
    assert capacity(study, Available(cpu=16, gpu=1, where="h100")) == 2  # two trials share the GPU
    assert capacity(load_study("quickstart"), Available(cpu=2, gpu=0, where="cpu")) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_trial_device_refuses_a_gpu_trial_without_cuda():
    assert trial_device(0) == "cpu"
    with pytest.raises(RuntimeError, match=r"^resources.gpu=1, but this worker has no CUDA device"):
        trial_device(1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_gpu_study_on_a_cpu_machine_exits_2_before_anything_is_created(tmp_path, command):
    extra = ["--out", str(tmp_path / "runs")] if command == "run" else []
    done = subprocess.run([sys.executable, "-m", "search.cli", command, "quickstart", *extra,
                           "--set", "resources.gpu=1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "resources.gpu: a trial asks for 1 GPU, but" in done.stderr
    assert not (tmp_path / "runs" / "quickstart").exists()
