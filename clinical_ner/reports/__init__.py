"""Reports over finished runs: the paper's tables and figures, read from results.json files only.

Entry point:
- `python -m clinical_ner.reports.tables DIR... [--out tables] [--bootstrap 1000] [--seed 0] [--no-plots]`:
  every results.json below the folders -> tokencls, seq2seq, per_type, cost, difference, corpus_effect, summary,
  failed (.md + .csv) and the PNG figures of `plots` (decision.png among them).
- `python -m clinical_ner.reports.export SWEEP_DIR [--to results/real_weights]`: complete cells -> the
  repository's results folder (canonical JSON), which the study's tables are built from.
Token lengths per tokenizer need models and tokenizers: they live in clinical_ner/analysis/lengths.py.

Modules: collect (read results.json), identity (code version and weights: never pooled across), cells (group
seeds into grid cells), bootstrap (intervals over test documents), scores (per-cell numbers), columns (the
columns naming a cell), captions, render (Markdown/CSV), main_tables, per_type, cost, difference (approach
effect), corpus_effect, summary, failed, plots, export, paper_results (the published numbers), labels (display
names).
"""
