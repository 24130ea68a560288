"""Analyses that need models, tokenizers or a run's predictions with the corpus text (unlike reports/, which
reads results.json files only): token lengths, the error-analysis page."""
