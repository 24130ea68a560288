"""Running jobs: the pipeline of one run, several ranks of one job, sweeps. Nothing below imports from here."""
