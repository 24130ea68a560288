"""GPU checks at real model size with random weights: the planner against measured memory (planner), training
MFU (mfu), our decoder against `generate` (decode), the CLI end to end (e2e); `python -m clinical_ner.checks.gpu
OUT_DIR` runs them all. Each also runs `--small` on the CPU (the tests do)."""
