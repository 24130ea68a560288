"""Reports over finished runs: the paper's tables, figures and token-length statistics.

Entry points:
- `python -m clinical_ner.reports.tables DIR... [--out tables] [--bootstrap 1000] [--seed 0] [--no-plots]`:
  every results.json below the folders -> tokencls, seq2seq, per_type, cost, difference, failed (.md + .csv)
  and the PNG figures of `plots`.
- `python -m clinical_ner.analysis.lengths [--out tables] [--families F...] [overrides...]`: token lengths of
  documents, sentences, prompts and JSON answers per family tokenizer, with recommended maximum lengths.

Modules: collect (read results.json), cells (group seeds into grid cells), bootstrap (intervals over test
documents), scores (per-cell numbers), captions, render (Markdown/CSV), main_tables, per_type, cost, difference,
failed, plots, paper_results (the published numbers), labels (display names), length_stats, lengths.
"""
