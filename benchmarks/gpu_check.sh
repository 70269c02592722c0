#!/usr/bin/env bash
# Issue 13's checks on a lent CUDA machine, as one run of at most about 8 minutes:
# the `gpu` tests, then bench_attention.py and bench_net.py on CUDA.
#
# The device machine has its own Python and torch but no Ray, Optuna, fvcore or gsa-pytorch and
# no package registry. Here, `make gpu-deps` copies the pure-Python packages it lacks into
# .gpu-deps/ (ignored by git); carry that folder with the run, e.g. with the device tool:
#   run(command="OUT=$OUT bash benchmarks/gpu_check.sh", carry=[".gpu-deps"], timeout_s=540)
# Results land in $OUT (default benchmarks/results): gpu.txt, pytest_gpu.log,
# attention_cuda.json, net_cuda.json.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-benchmarks/results}"
py="${PYTHON:-python3}"
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/gpu.txt"
# Only the folders holding gpu tests: others import Ray or Optuna at collection.
timeout 240 "$py" -m pytest -m gpu -q -p no:cacheprovider -o addopts="--strict-markers -ra" \
  tests/gsa_space tests/search/test_train_loop.py tests/search/test_compile.py 2>&1 | tee "$out/pytest_gpu.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
timeout 150 "$py" benchmarks/bench_attention.py --device cuda --reps 30 --out "$out/attention_cuda.json" || status=1
timeout 120 "$py" benchmarks/bench_net.py --device cuda --out "$out/net_cuda.json" || status=1
exit "$status"
