"""Continual pretraining: corpora, packing, weight cache, causal-LM module, stage, throughput."""
