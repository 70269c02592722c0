"""The benchmarks run end to end at toy sizes, with neither Ray nor Optuna imported.

Timings here mean nothing (tiny batches, one repetition); this keeps the scripts working and their
JSON complete. The figures come from running them in full (benchmarks/README in the main README).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

RUN_BOTH = """
import runpy, sys
jobs = [(sys.argv[1], sys.argv[2].split()), (sys.argv[3], sys.argv[4].split())]
for script, args in jobs:
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")
leaked = sorted({"ray", "optuna"} & set(sys.modules))
print("imported:", leaked)
"""


def test_bench_attention_and_bench_net_run_on_the_cpu_without_ray(tmp_path):
    attention, net = tmp_path / "attention.json", tmp_path / "net.json"
    proc = subprocess.run(
        [sys.executable, "-c", RUN_BOTH,
         str(BENCHMARKS / "bench_attention.py"), f"--batch 2 --reps 1 --warmup 0 --threads 1 --out {attention}",
         str(BENCHMARKS / "bench_net.py"), f"--batch 2 --reps 1 --steps 1 --warmup 0 --threads 1 --out {net}"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "imported: []" in proc.stdout
    report = json.loads(attention.read_text())
    assert set(report["shapes"]) == {"64x32", "128x16", "256x8"}
    assert {"conv3x3", "gsa", "gsa_torch_ops", "gsa_pytorch"} <= set(report["shapes"]["64x32"]["median_ms"])
    assert report["config"]["device"] == "cpu"
    nets = json.loads(net.read_text())
    assert set(nets["images_per_s_median"]) == {"resnet26_cifar", "gsa_resnet26_cifar"}
    assert all(v > 0 for v in nets["peak_mib"].values())             # the children trained and grew
    assert nets["gsa_vs_conv_images_per_s"] > 0 and nets["config"]["device"] == "cpu"
    assert "gsa/conv images/s" in proc.stdout


def test_cuda_benchmarks_say_so_without_cuda():
    import torch

    if torch.cuda.is_available():
        return
    for script in ("bench_attention.py", "bench_net.py"):
        proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--device", "cuda"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and "torch.cuda.is_available() is False" in proc.stderr
        assert "Traceback" not in proc.stderr
