"""Lightning plumbing shared by every stage: trainer, callbacks, loggers, optimisers, rank queries, and the
inference settings saved beside a trained model (inference_settings.py)."""
