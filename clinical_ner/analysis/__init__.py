"""Analyses that need models or tokenizers (unlike reports/, which reads results.json files only)."""
