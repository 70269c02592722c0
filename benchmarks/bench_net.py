"""Training throughput and peak memory of gsa_resnet26_cifar against its conv twin resnet26_cifar.

One training step is forward, cross-entropy, backward and an SGD step, on channels-last maps;
on CUDA under bf16 autocast (the recipe of `train.amp: bf16`), on the CPU in float32 (as trials
train there). The two nets are timed interleaved, their order alternating each repetition, so that
load from other processes hits them alike; we report medians, the median of per-repetition ratios,
and save JSON. Peak memory: on CUDA torch's peak allocated bytes over the timed steps; on the CPU
the peak resident set of a fresh child process that trains the net alone, less its resident size
before the first step (Linux). Needs only torch (the GSA nets are pure PyTorch): no Ray, no Optuna.

Usage: python benchmarks/bench_net.py [--device cpu|cuda] [--batch N] [--reps N] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch.nn import functional as F

from gsa_space.networks import create_net

NETS: tuple[str, ...] = ("resnet26_cifar", "gsa_resnet26_cifar")  # baseline first
NUM_CLASSES = 100
RESULTS = Path(__file__).parent / "results"
TARGET_GSA_VS_CONV_IMAGES_PER_S_MIN = 0.8  # issue 13: the GSA net at least 0.8x the conv net's images/s


def train_step(name: str, device: torch.device, batch: int) -> Callable[[], None]:
    """One SGD step of net `name` on a fixed random CIFAR-100 batch; returns when the device is done."""
    torch.manual_seed(0)
    net = create_net(name, num_classes=NUM_CLASSES).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    amp = device.type == "cuda"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(net(x).float(), y)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return step


def timed(step: Callable[[], None], steps: int) -> float:
    """Seconds per step over `steps` steps (CUDA steps end with a synchronize)."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def cpu_peak_mib(name: str, batch: int, steps: int, threads: int) -> float:
    """Peak resident MiB that `steps` training steps add to a fresh process holding only net `name`."""
    out = subprocess.run([sys.executable, __file__, "--memory-child", name, "--batch", str(batch),
                          "--steps", str(steps), "--threads", str(threads)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def memory_child(name: str, batch: int, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    step = train_step(name, torch.device("cpu"), batch)
    resident_kib = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    for _ in range(steps):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - resident_kib) / 1024)  # ru_maxrss: KiB


def bench(device: torch.device, batch: int, reps: int, steps: int, warmup: int, threads: int) -> dict:
    steps_of = {name: train_step(name, device, batch) for name in NETS}
    for name in NETS:
        for _ in range(warmup):
            steps_of[name]()
    seconds: dict[str, list[float]] = {name: [] for name in NETS}
    peak_mib: dict[str, float] = {}
    if device.type == "cuda":
        for name in NETS:
            torch.cuda.reset_peak_memory_stats(device)
            timed(steps_of[name], 1)
            peak_mib[name] = torch.cuda.max_memory_allocated(device) / 2**20
    for rep in range(reps):
        for name in (NETS if rep % 2 == 0 else NETS[::-1]):
            seconds[name].append(timed(steps_of[name], steps))
    if device.type == "cpu":
        del steps_of  # the children measure alone
        peak_mib = {name: cpu_peak_mib(name, batch, 2, threads) for name in NETS}
    images = {name: [batch / s for s in seconds[name]] for name in NETS}
    conv, gsa = NETS
    ratio = statistics.median(g / c for g, c in zip(images[gsa], images[conv]))
    return {
        "images_per_s_median": {name: statistics.median(v) for name, v in images.items()},
        "images_per_s": images,
        "peak_mib": peak_mib,
        "gsa_vs_conv_images_per_s": ratio,
        "gsa_vs_conv_peak_memory": peak_mib[gsa] / peak_mib[conv],
        "target_gsa_vs_conv_images_per_s_min": TARGET_GSA_VS_CONV_IMAGES_PER_S_MIN,
        "target_met": ratio >= TARGET_GSA_VS_CONV_IMAGES_PER_S_MIN,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, help="images per step (default: 32 on the CPU, 128 on CUDA)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per net")
    parser.add_argument("--steps", type=int, help="steps per repetition (default: 2 on the CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    batch = args.batch or (128 if cuda else 32)
    steps = args.steps or (20 if cuda else 2)
    if args.memory_child:
        memory_child(args.memory_child, batch, steps, args.threads)
        return
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_net.py: --device cuda, but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    report = bench(device, batch, args.reps, steps, args.warmup, args.threads)
    report.update(
        config={"device": args.device, "batch": batch, "reps": args.reps, "steps_per_rep": steps,
                "warmup": args.warmup, "memory_format": "channels_last",
                "precision": "bf16 autocast" if cuda else "float32", "optimizer": "SGD momentum 0.9"},
        env={"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
             "gpu": torch.cuda.get_device_name(device) if cuda else None,
             "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    )
    med = report["images_per_s_median"]
    print(f"{'net':>20} {'images/s':>10} {'peak MiB':>9}")
    for name in NETS:
        print(f"{name:>20} {med[name]:>10.1f} {report['peak_mib'][name]:>9.0f}")
    print(f"gsa/conv images/s (median of paired reps): {report['gsa_vs_conv_images_per_s']:.2f} "
          f"(target >= {TARGET_GSA_VS_CONV_IMAGES_PER_S_MIN}: {'met' if report['target_met'] else 'MISSED'}); "
          f"peak memory gsa/conv {report['gsa_vs_conv_peak_memory']:.2f}")
    out = args.out or RESULTS / f"net_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
