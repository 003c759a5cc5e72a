# README's two commands: `make repro` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# dvc.yaml runs `python stages/...`: the venv must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
UNAME := $(shell uname -s)
# Apple Silicon uses Metal; on Linux MLX needs a backend extra (cpu, or cuda on NVIDIA: MLX_BACKEND=cuda).
MLX_BACKEND ?= cpu
ifeq ($(UNAME),Darwin)
EXTRAS := dev
else
EXTRAS := $(MLX_BACKEND),dev
endif

.PHONY: setup repro test bench plots clean-venv

# The stamp is named by the content of what setup reads, so a fresh clone with the same files (or a
# test's clone sharing this venv) sees setup as done, and any change to them reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup_blas.sh | cksum | cut -d' ' -f1)

# The BLAS link is checked on every run (quiet and instant when in place), so a removed or upgraded
# OpenBLAS or a reinstalled mlx-cpu wheel is repaired without deleting the stamp.
setup: $(STAMP)
	@bash scripts/setup_blas.sh $(BIN)/python

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

repro: setup
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest -q

# DVC plots as one offline HTML page: `make plots` or `make plots REVS="HEAD exp-name"`.
plots: setup
	$(BIN)/python scripts/plots_offline.py $(REVS)

bench: setup
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
