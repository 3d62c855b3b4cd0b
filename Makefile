# Two entry points, each doing all set-up from a fresh clone:
#   make run   - the main job (builds the report from all problem results)
#   make test  - the test suite
# Data root: $SCRATCHNET_DATA (e.g. ../shared/data), else ./data.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export SCRATCHNET_DATA ?= $(abspath data)

.PHONY: venv run test test-fast bench report clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[problems,test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python bench/train_step.py

run: $(STAMP)
	$(BIN)/python problems/demo_train.py

clean:
	rm -rf $(VENV) results report/report.html report/report.pdf
