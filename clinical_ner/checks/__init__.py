"""Checks a user runs on the code or the hardware, not part of a training run: same numbers before and after a
refactor (compare_runs), same numbers under other CPU settings (determinism), and the planner and the CLI
measured on a GPU (gpu/)."""
