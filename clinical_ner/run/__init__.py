"""Running jobs: the pipeline of one run, several ranks of one job, sweeps. Nothing below imports from here,
except from record/: the record a run leaves (its folder layout, results.json, the code version), which every
layer reads and which imports nothing of run/. This file imports nothing, so reading record/ loads no job code."""
