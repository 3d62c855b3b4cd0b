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
	$(BIN)/python -m pip install -q --no-compile -e '.[problems,test]'  # no .pyc pass over torch's files: faster set-up
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python bench/train_step.py

# The homework report: runs P1, P2 (extracting its features once), P4, P5, evaluates the committed P3
# weights, then writes report/report.html and report/report.pdf. RETRAIN=1 retrains P3; QUICK=1 skips
# P4's EOT attack and P5's learning experiment; NO_DOWNLOAD=1 never fetches a missing dataset. With data
# missing it answers what it can and exits 2, naming the fix. The cover's names:
# REPORT_AUTHOR="Name" REPORT_COLLABORATORS="A, B" (none given: printed as such); FULL_CODE=1 prints every
# code file whole, the scratchnet library included.
report: $(STAMP)
	$(BIN)/python report/make_report.py $(if $(RETRAIN),--retrain) $(if $(QUICK),--quick) $(if $(NO_DOWNLOAD),--no-download) \
		$(if $(FULL_CODE),--full-code) --author "$(REPORT_AUTHOR)" --collaborators "$(REPORT_COLLABORATORS)"

run: report

clean:
	rm -rf $(VENV) results report/report.html report/report.pdf
