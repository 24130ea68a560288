"""Reports over finished runs: the paper's tables and figures, read from results.json files only.

Entry point:
- `python -m clinical_ner.reports.tables DIR... [--out tables] [--bootstrap 1000] [--seed 0] [--no-plots]`:
  every results.json below the folders -> tokencls, seq2seq, per_type, cost, difference, failed (.md + .csv)
  and the PNG figures of `plots`.
Token lengths per tokenizer need models and tokenizers: they live in clinical_ner/analysis/lengths.py.

Modules: collect (read results.json), cells (group seeds into grid cells), bootstrap (intervals over test
documents), scores (per-cell numbers), captions, render (Markdown/CSV), main_tables, per_type, cost, difference,
failed, plots, paper_results (the published numbers), labels (display names).
"""
