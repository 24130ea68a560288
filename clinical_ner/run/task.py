"""The failure policy of one training job, in one place: `@task_wrapper` around the function that runs it.

Whatever the job raises is recorded in the run folder (`results.json` with `status: failed`, the error and the
phases it got through), printed as one `error:` line and turned into the exit code:

| failure | recorded error | exit | inside a `-m` sweep |
| --- | --- | --- | --- |
| a user mistake (`UserError`) | its line | 2 | the cell fails, the sweep goes on |
| a rank > 0 died (`RankFailed`) | `RankFailed: ...` | 1 | the cell fails, the sweep goes on |
| a full disk | `no space left on device writing <file>` | 1 | the sweep stops (every next cell would fail alike) |
| anything else (a bug) | `<Type>: <message>` | traceback | traceback in the cell's log, the sweep goes on |
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from clinical_ner.errors import EXIT_USER_ERROR, RankFailed, disk_full, known_failure
from clinical_ner.run.pipeline import coordinates
from clinical_ner.run.record.code_version import code_version
from clinical_ner.run.record.results import write_results
from clinical_ner.run.sweep import in_multirun
from clinical_ner.training.rank_zero import is_global_zero
from clinical_ner.training.timings import PhaseTimes

log = logging.getLogger(__name__)
DISK_FULL_HINT = (
    "; free disk space (run folders, $CLINICAL_NER_CACHE, /tmp) and run the same command again: it resumes from"
    " the last checkpoint"
)


@dataclass
class Cell:
    """One job's run folder and what a failure record needs: its config and the phases timed so far."""

    cfg: DictConfig
    times: PhaseTimes = field(default_factory=PhaseTimes)
    writer: bool = field(default_factory=is_global_zero)  # rank 0 writes the run folder

    @property
    def run_dir(self) -> Path:
        """The job's run folder (`output_dir`)."""
        return Path(self.cfg.output_dir)

    def record_failure(self, error: str) -> None:
        """Write `results.json` with `status: failed`, the error line and the phases it got through."""
        if self.writer:
            record = {
                "status": "failed",
                "error": error,
                **coordinates(self.cfg),
                "code": code_version(),
                "timings": self.times.as_dict(),
            }
            write_results(self.run_dir, record)


def task_wrapper(task: Callable[[Cell], Any]) -> Callable[[DictConfig], Any]:
    """Run `task(cell)` under the failure policy (module doc); returns its value, or None for a sweep cell that
    failed and let the sweep go on."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        cell = Cell(cfg)
        try:
            return task(cell)
        except Exception as err:
            known = known_failure(err)
            if isinstance(err, RankFailed):
                # rank 0's own traceback says nothing (it was interrupted); the dead rank's log says why
                known = (f"RankFailed: {err or 'a rank > 0 died'}", 1)
            if known is None:  # a bug: its traceback is the message
                error = f"{type(err).__name__}: {err}"
                cell.record_failure(error)
                if not in_multirun():
                    raise
                log.exception("cell failed")  # the traceback goes to this cell's log; the sweep goes on
                print(f"error: {cell.run_dir}: {error}", file=sys.stderr)
                return None
            error, code = known
            stops_sweep = disk_full(err) is not None  # the machine, not the cell: every next cell would fail
            with suppress(*((OSError,) if stops_sweep else ())):  # a full disk may refuse the record too
                cell.record_failure(error)
            where = "" if code == EXIT_USER_ERROR else f"{cell.run_dir}: "
            print(f"error: {where}{error}{DISK_FULL_HINT if stops_sweep else ''}", file=sys.stderr)
            if in_multirun() and not stops_sweep:
                return None
            sys.exit(code)

    return wrapper
