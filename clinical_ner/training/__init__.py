"""Lightning plumbing shared by every stage: trainer, callbacks, loggers, optimisers, rank queries."""
