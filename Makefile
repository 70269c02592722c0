# Two commands on a fresh machine with Python 3.11:
#   make quickstart   create .venv, install, run the main job
#   make test         install, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes (pytest-xdist; a test file stays on one, so its module fixtures run once). Two on
# a 2-core machine: most tests wait on Ray, and the suite takes ~20 min instead of ~33 in one.
# TEST_WORKERS=1 runs it in one process.
TEST_WORKERS ?= 2

.PHONY: install quickstart test bench gpu-deps clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements-lock.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Each quick start is a new run directory, runs/quickstart-<time>; the command ends by
# printing where the results and the report are.
quickstart: install
	$(BIN)/gsa-nas run quickstart --name quickstart-$$(date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/python -m pytest $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) --durations=15

bench: install
	$(BIN)/python benchmarks/bench_attention.py
	$(BIN)/python benchmarks/bench_harness.py

# The pure-Python packages a lent GPU machine lacks (benchmarks/gpu_check.sh), copied from the venv.
gpu-deps: install
	rm -rf .gpu-deps && mkdir -p .gpu-deps
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	for pkg in fvcore iopath yacs termcolor tabulate portalocker gsa_pytorch; do cp -r "$$site/$$pkg" .gpu-deps/; done

clean:
	rm -rf $(VENV) runs .gpu-deps
