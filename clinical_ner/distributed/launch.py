"""Which path runs a job (`run_job`, called by clinical_ner/train.py), after its config is checked in a second
(clinical_ner/distributed/checks.py):

| the job | who starts the processes | what runs here |
| --- | --- | --- |
| one device | nobody | this process runs the stages |
| started by a launcher: torchrun, SLURM tasks (hydra/launcher=slurm) | the launcher, one process per device | every process runs the stages; rank 0 writes the run folder, ranks > 0 a scratch folder |
| several devices, typed without a launcher (e.g. a `-m` sweep) | torch's elastic agent, from this process (local.py) | this process supervises; the ranks run the stages |

In every case Lightning reads the launcher's variables (`RANK`, `LOCAL_RANK`, `WORLD_SIZE`, ...) and joins the
processes instead of starting its own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from lightning.fabric.plugins.environments import TorchElasticEnvironment
from omegaconf import DictConfig

from clinical_ner.distributed.checks import check_job, externally_launched
from clinical_ner.distributed.local import run_local_ranks, with_output_dir
from clinical_ner.distributed.scope import process_group_scope, restored_env, stopped_by_launcher
from clinical_ner.run.pipeline import run
from clinical_ner.training.rank_zero import global_rank, is_global_zero
from clinical_ner.training.timings import PhaseTimes


def run_job(cfg: DictConfig, times: PhaseTimes, stages: Callable[..., dict] = run) -> dict | None:
    """Check the config, then run `stages(cfg, times)` on the path the job needs (module doc); returns the
    results of rank 0 (what ranks > 0 of an external launch return is not kept). The launch variables and the
    process group are gone afterwards, so the next job of a `-m` sweep starts clean."""
    count = check_job(cfg)
    with restored_env(), process_group_scope():
        if externally_launched():
            with ExitStack() as stack:
                rank_cfg = cfg
                if not is_global_zero():  # one run folder per job: rank 0's
                    scratch = stack.enter_context(
                        tempfile.TemporaryDirectory(prefix=f"clinical_ner-rank{global_rank()}-")
                    )
                    rank_cfg = with_output_dir(cfg, Path(scratch))
                if count > 1 and TorchElasticEnvironment.detect():  # torchrun stops the others when one dies
                    stack.enter_context(stopped_by_launcher())
                return stages(rank_cfg, times)
        if count == 1:
            return stages(cfg, times)
        return run_local_ranks(cfg, count, times)
