"""Harness overhead: the same trials trained by `gsa-nas run` and by a bare loop.

Both sides train the same model, seeds and epochs at the same thread count, one trial after
another (max_concurrent 1). A harness trial's time is its slot in the Optuna ledger: from the
previous trial's completion (or its own start, for the first) to its own completion, so it
includes Ray's actor start, Optuna ask/tell, checkpoints, reporting and Tune's loop. The bare
loop runs before and after the harness and its two times are averaged (drift on a shared host).

    python benchmarks/bench_harness.py                 # 5 trials x 12 epochs, 2 threads
    python benchmarks/bench_harness.py --trials 6 --epochs 15
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "harness.json"


def study_doc(trials: int, epochs: int, threads: int) -> dict:
    """The quickstart's full GSA variant, `trials` seeds, trained one after another."""
    from search.study.files import find_study_file

    doc = yaml.safe_load(find_study_file("quickstart").read_text())
    doc.update(name="bench_harness", seeds=list(range(trials)), baseline="both", variants={"both": {}},
               resources={"cpu": threads, "gpu": 0}, max_concurrent=1)
    doc["train"]["epochs"] = epochs
    return doc


def bare_times(study_path: Path, threads: int) -> dict[int, float]:
    """Seconds per seed for Trainer epochs + the final test pass, no Ray, no Optuna."""
    from search.data import load_data
    from search.study import load_study, resolve_trial
    from search.train_loop import Trainer
    from search.worker import configure_process

    study = load_study(str(study_path))
    data = load_data(study.data)
    configure_process(threads=threads, device="cpu")  # as a Tune worker does once
    times = {}
    for seed in study.seeds:
        start = time.perf_counter()
        trainer = Trainer(resolve_trial(study, variant="both", seed=seed, params={}), data)
        for _ in range(study.train.epochs):
            trainer.train_epoch()
        trainer.test()
        times[seed] = time.perf_counter() - start
        print(f"  bare seed {seed}: {times[seed]:.1f} s", flush=True)
    return times


def harness_times(study_path: Path, out: Path) -> tuple[dict[int, float], float]:
    """Per-seed slot seconds from the Optuna ledger, and the whole command's wall time."""
    import optuna

    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "search.cli", "run", str(study_path), "--out", str(out), "--no-report"],
                   check=True, cwd=ROOT)
    total = time.perf_counter() - start
    run_dir = out / "bench_harness"
    storage = json.loads((run_dir / "run.json").read_text())["storage"]
    trials = optuna.load_study(study_name="bench_harness", storage=storage).get_trials(deepcopy=False)
    trials = sorted((t for t in trials if t.datetime_complete), key=lambda t: t.datetime_complete)
    slots, previous = {}, None
    for t in trials:
        begin = previous or t.datetime_start
        slots[int(t.user_attrs["seed"])] = (t.datetime_complete - begin).total_seconds()
        previous = t.datetime_complete
    return slots, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        study_path = Path(tmp) / "bench_harness.yaml"
        study_path.write_text(yaml.safe_dump(study_doc(args.trials, args.epochs, args.threads), sort_keys=False))
        print("bare loop (before):", flush=True)
        before = bare_times(study_path, args.threads)
        print("harness (gsa-nas run):", flush=True)
        harness, total = harness_times(study_path, Path(tmp) / "runs")
        print("bare loop (after):", flush=True)
        after = bare_times(study_path, args.threads)

    rows = []
    for seed in sorted(harness):
        bare = (before[seed] + after[seed]) / 2
        rows.append({"seed": seed, "bare_s": bare, "harness_s": harness[seed], "ratio": harness[seed] / bare})
    ratios = [r["ratio"] for r in rows]
    median = statistics.median(ratios)
    print(f"\n{'seed':>4} {'bare s':>8} {'harness s':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['seed']:>4} {r['bare_s']:>8.1f} {r['harness_s']:>10.1f} {r['ratio']:>7.3f}")
    bare_total = sum((before[s] + after[s]) / 2 for s in harness)
    print(f"median per-trial ratio {median:.3f} (overhead {100 * (median - 1):.1f}%); "
          f"whole command incl. Ray start {total:.1f} s vs bare {bare_total:.1f} s ({total / bare_total:.3f}x)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "trials": rows, "median_ratio": median, "overhead_pct": 100 * (median - 1),
        "command_s": total, "bare_total_s": bare_total, "epochs": args.epochs, "threads": args.threads,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(),
    }, indent=2) + "\n")
    print(f"saved {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
