# Two commands on a fresh machine with Python 3.11:
#   make quickstart   create .venv, install, run the main job
#   make test         install, run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install quickstart test bench clean

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c requirements-lock.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

quickstart: install
	$(BIN)/gsa-nas describe gsa_resnet26_cifar

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python benchmarks/bench_attention.py

clean:
	rm -rf $(VENV) runs
