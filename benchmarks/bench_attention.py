"""Forward+backward time of the GSA module against the 3x3 conv it replaces and gsa-pytorch.

"gsa" is the module as it runs here (backend "auto": the native CPU kernels when they build);
"gsa_torch_ops" is the same module on its torch_ops backend, the fallback without a C compiler. By
default the process keeps glibc's allocator settings; --retain-memory makes it keep freed memory as
our training processes do (gsa_space.attention.native.retain_freed_memory), for every candidate alike.

Candidates are timed interleaved (their order rotates every repetition) so that load from other
processes hits them alike; we report medians and the ratios from this one run, and save JSON.
Usage: python benchmarks/bench_attention.py [--batch 32] [--reps 12] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from gsa_space.attention import GlobalSelfAttention, attention_backend
from gsa_space.attention.native import kernels_loaded, retain_freed_memory
from search.env_info import cpu_name

SHAPES: tuple[tuple[int, int], ...] = ((64, 32), (128, 16), (256, 8))  # (C, H=W): CIFAR stages
HEADS, DIM_KEY = 8, 16
DEFAULT_OUT = Path(__file__).parent / "results" / "attention.json"
TARGETS = {  # the performance targets of DESIGN.md section 9, as checked below
    "gsa_vs_conv_geomean_max": 1.0,
    "gsa_vs_conv_each_max": 2.0,
    "peer_vs_gsa_geomean_min": 2.0,
    "peer_vs_gsa_each_min": 1.0,
}


class TorchOps(nn.Module):
    """A GSA module on its torch_ops backend: what runs without a C compiler (CUDA runs batched)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with attention_backend("torch_ops"):
            return self.inner(x)


def candidates(C: int, H: int) -> dict[str, nn.Module]:
    """The modules compared at one stage shape, all mapping (B, C, H, H) -> (B, C, H, H)."""
    from gsa_pytorch import GSA

    return {
        "conv3x3": nn.Conv2d(C, C, 3, padding=1),
        "gsa": GlobalSelfAttention(C, C, heads=HEADS, dim_key=DIM_KEY, extent="global", max_size=H),
        "gsa_out_proj": GlobalSelfAttention(C, C, heads=HEADS, dim_key=DIM_KEY, extent="global",
                                            out_proj=True, max_size=H),
        "gsa_torch_ops": TorchOps(GlobalSelfAttention(C, C, heads=HEADS, dim_key=DIM_KEY, extent="global",
                                                      max_size=H)),
        "gsa_pytorch": GSA(dim=C, dim_out=C, heads=HEADS, dim_key=DIM_KEY, rel_pos_length=H),
    }


def step(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], float]:
    """One timed forward+backward; gradients are dropped before, not accumulated.

    The backward pass gets a dense output gradient, as inside a network: `out.sum()` would
    hand every op a stride-0 gradient, which sends batched matmuls down a per-matrix slow path.
    """
    def run() -> float:
        module.zero_grad(set_to_none=True)
        x.grad = None
        start = time.perf_counter()
        module(x).backward(grad)
        return time.perf_counter() - start
    return run


def bench_shape(C: int, H: int, batch: int, reps: int, warmup: int) -> dict[str, list[float]]:
    torch.manual_seed(0)
    mods = candidates(C, H)
    x = torch.randn(batch, C, H, H, requires_grad=True)
    grad = torch.randn(batch, C, H, H)
    runs = {name: step(m.train(), x, grad) for name, m in mods.items()}
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            times[name].append(runs[name]() * 1e3)
    return times


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarise(results: dict[str, dict[str, list[float]]]) -> dict[str, object]:
    rows, vs_conv, vs_conv_proj, peer_vs_gsa = {}, [], [], []
    for shape, times in results.items():
        med = {name: statistics.median(t) for name, t in times.items()}
        paired = {  # ratio within each repetition: robust to load that drifts between reps
            "gsa_vs_conv": [g / c for g, c in zip(times["gsa"], times["conv3x3"])],
            "peer_vs_gsa": [p / g for p, g in zip(times["gsa_pytorch"], times["gsa"])],
        }
        best = {name: min(t) for name, t in times.items()}
        rows[shape] = {
            "median_ms": med,
            "min_ms": best,
            "min_ratio": {"gsa_vs_conv": best["gsa"] / best["conv3x3"],
                          "peer_vs_gsa": best["gsa_pytorch"] / best["gsa"]},
            "median_paired_ratio": {k: statistics.median(v) for k, v in paired.items()},
            "gsa_vs_conv": med["gsa"] / med["conv3x3"],
            "gsa_out_proj_vs_conv": med["gsa_out_proj"] / med["conv3x3"],
            "gsa_torch_ops_vs_conv": med["gsa_torch_ops"] / med["conv3x3"],
            "peer_vs_gsa": med["gsa_pytorch"] / med["gsa"],
        }
        vs_conv.append(rows[shape]["gsa_vs_conv"])
        vs_conv_proj.append(rows[shape]["gsa_out_proj_vs_conv"])
        peer_vs_gsa.append(rows[shape]["peer_vs_gsa"])
    summary = {
        "gsa_vs_conv_geomean": geomean(vs_conv),
        "gsa_out_proj_vs_conv_geomean": geomean(vs_conv_proj),
        "peer_vs_gsa_geomean": geomean(peer_vs_gsa),
    }
    checks = {
        "gsa_vs_conv_geomean_max": summary["gsa_vs_conv_geomean"] <= TARGETS["gsa_vs_conv_geomean_max"],
        "gsa_vs_conv_each_max": max(vs_conv) <= TARGETS["gsa_vs_conv_each_max"],
        "peer_vs_gsa_geomean_min": summary["peer_vs_gsa_geomean"] >= TARGETS["peer_vs_gsa_geomean_min"],
        "peer_vs_gsa_each_min": min(peer_vs_gsa) >= TARGETS["peer_vs_gsa_each_min"],
    }
    return {"shapes": rows, "summary": summary, "targets": TARGETS, "targets_met": checks}


def print_table(report: dict[str, object]) -> None:
    names = ["conv3x3", "gsa", "gsa_out_proj", "gsa_torch_ops", "gsa_pytorch"]
    print(f"{'C x H':>9} " + " ".join(f"{n + ' ms':>16}" for n in names)
          + f" {'gsa/conv':>9} {'gsa+proj/conv':>14} {'peer/gsa':>9}")
    for shape, row in report["shapes"].items():
        med = row["median_ms"]
        print(f"{shape:>9} " + " ".join(f"{med[n]:>16.1f}" for n in names)
              + f" {row['gsa_vs_conv']:>9.2f} {row['gsa_out_proj_vs_conv']:>14.2f} {row['peer_vs_gsa']:>9.2f}")
    s = report["summary"]
    print(f"{'geomean':>9} " + " " * 84 + f" {s['gsa_vs_conv_geomean']:>9.2f} "
          f"{s['gsa_out_proj_vs_conv_geomean']:>14.2f} {s['peer_vs_gsa_geomean']:>9.2f}")
    # On a shared machine, load from other processes only ever adds time: the ratios of the
    # fastest repetitions and of paired repetitions are shown beside the ratios of medians.
    for key, label in (("median_paired_ratio", "median of per-repetition ratios"), ("min_ratio", "ratio of minima")):
        print(f"{label}: " + ", ".join(
            f"{shape} gsa/conv {row[key]['gsa_vs_conv']:.2f} peer/gsa {row[key]['peer_vs_gsa']:.2f}"
            for shape, row in report["shapes"].items()))
    for name, ok in report["targets_met"].items():
        print(f"target {name} ({report['targets'][name]}): {'met' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions per candidate (>= 10)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--retain-memory", action="store_true",
                        help="keep freed memory in the process, as training processes do")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory() if args.retain_memory else False
    load_before = os.getloadavg()
    results = {f"{C}x{H}": bench_shape(C, H, args.batch, args.reps, args.warmup) for C, H in SHAPES}
    report = summarise(results)
    report.update(
        config={"batch": args.batch, "reps": args.reps, "warmup": args.warmup, "heads": HEADS,
                "dim_key": DIM_KEY, "timing": "forward+backward, median of interleaved reps"},
        env={"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_model": cpu_name(),
             "native_kernels": kernels_loaded(), "retain_freed_memory": retained,
             "cpu_count": os.cpu_count(), "python": platform.python_version(),
             "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        times_ms=results,
    )
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
