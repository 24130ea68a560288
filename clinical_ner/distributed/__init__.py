"""Jobs on several devices: the checks before anything starts (checks), which launcher runs a job (launch:
one process, torchrun or SLURM tasks, or torch's elastic agent started per cell of a local sweep: local,
worker), and what a job leaves behind in its process (scope). docs/full_scale.md gives the commands."""
