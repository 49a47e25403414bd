# hitgen: `make demo` (set-up + the main job) and `make test` (set-up + all tests).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_EVENTS ?= 2000

# Geant4 data: use ../shared/g4data when present and GEANT4_DATA_DIR is not set by the user.
SHARED_G4DATA := $(abspath ../shared/g4data)
ifeq ($(strip $(GEANT4_DATA_DIR)),)
ifneq ($(wildcard $(SHARED_G4DATA)),)
export GEANT4_DATA_DIR := $(SHARED_G4DATA)
endif
endif

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# Until a surrogate exists, the candidate is a second Geant4 sample (another seed).
demo: setup
	mkdir -p demo
	$(BIN)/hitgen simulate clas12-ecal --events $(DEMO_EVENTS) --out demo/reference.h5 --seed 1 --overwrite
	$(BIN)/hitgen info demo/reference.h5 --plots demo/plots
	$(BIN)/hitgen simulate clas12-ecal --events $(DEMO_EVENTS) --out demo/candidate.h5 --seed 2 --overwrite
	$(BIN)/hitgen evaluate demo/reference.h5 demo/candidate.h5 --out demo/evaluation
	@echo "report: demo/evaluation/report.html"

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) demo .pytest_cache
