"""Several devices per cell inside a local `-m` sweep: torch's elastic agent (what torchrun runs) started from
the Hydra process, once per cell.

torchrun cannot serve here: it would re-run the whole sweep in every rank. So the Hydra process stays the
supervisor and trains nothing: it checks the config, writes it resolved to a file and calls
`torch.distributed.launcher.api.elastic_launch`, which hosts the rendezvous store on a port the system picks
(bound for the whole job, so a parallel job cannot take it), starts N processes of
`python -m clinical_ner.distributed.worker CONFIG --output-dir WORK` and, as under torchrun, stops them all
(SIGTERM, then SIGKILL) as soon as one exits with an error. The failure then becomes the cell's (`RankFailed`
with the dead rank's last log lines, or rank 0's own `UserError`), and the sweep goes on with the next cell.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from clinical_ner.errors import EXIT_USER_ERROR, RankFailed, UserError
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.timings import PhaseTimes

log = logging.getLogger(__name__)
WORKER = "clinical_ner.distributed.worker"
AGENT_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")  # torch's agent installs handlers for these
MONITOR_INTERVAL_S = 0.5  # how often the agent looks at the ranks


@dataclass(frozen=True)
class LocalLaunch:
    """The launch handle of one local job: the scratch folder through which the supervisor and its ranks
    talk (the resolved config in, rank 0's results and each rank's failure report out), given to every
    rank on its command line."""

    work: Path

    @property
    def config(self) -> Path:
        return self.work / "config.yaml"

    @property
    def results(self) -> Path:
        return self.work / "rank0-results.json"

    def failure(self, rank: int) -> Path:
        """Where rank `rank` reports why it failed (its error line, exit code, phases run)."""
        return self.work / f"failure-{rank}.json"

    def scratch(self, rank: int) -> Path:
        """The output folder of a rank > 0 (deleted with the job): rank 0 alone writes the run folder."""
        return self.work / f"rank-{rank}"

    def command(self) -> list[str]:
        """The arguments of `python` that start one rank (the agent gives each its RANK and LOCAL_RANK)."""
        return ["-m", WORKER, str(self.config), "--output-dir", str(self.work)]


def resolved_yaml(cfg: DictConfig) -> str:
    """The job's config with every interpolation resolved (`${hydra:...}` exists only in the Hydra process)."""
    return OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)))


def load_config(path: Path | str) -> DictConfig:
    """A resolved config file back onto the typed schema (what the ranks run)."""
    from clinical_ner.config import typed_config

    return typed_config(OmegaConf.to_container(OmegaConf.load(path)))


def with_output_dir(cfg: DictConfig, output_dir: Path) -> DictConfig:
    """A copy of `cfg` that writes into `output_dir`."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.output_dir = str(output_dir)
    return cfg


@contextmanager
def handlers_kept(names: tuple[str, ...] = AGENT_SIGNALS) -> Iterator[None]:
    """Put the signal handlers back after the agent (it replaces them for good): Ctrl-C stays Ctrl-C."""
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names}
    try:
        yield
    finally:
        for name, handler in saved.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)


def run_local_ranks(cfg: DictConfig, world: int, times: PhaseTimes) -> dict:
    """Run the job's stages in `world` local processes under torch's elastic agent; returns rank 0's results.
    A failed rank raises the job's failure (`failure_of`); rank 0's phases reach `times` either way."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    folder = RunFolder(cfg.output_dir)
    folder.ranks.mkdir(parents=True, exist_ok=True)
    launch = LocalLaunch(Path(tempfile.mkdtemp(prefix="clinical_ner-ddp-")))
    try:
        launch.config.write_text(resolved_yaml(cfg), encoding="utf-8")
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=world,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="127.0.0.1:0",  # as torchrun --standalone: a free port, held by the agent's store
            max_restarts=0,
            monitor_interval=MONITOR_INTERVAL_S,
            logs_specs=DefaultLogsSpecs(log_dir=str(launch.work / "agent")),
        )
        log.info("DDP: %d processes under torch's elastic agent (ranks > 0 log to %s)", world, folder.ranks)
        with handlers_kept():
            try:
                elastic_launch(config, sys.executable)(*launch.command())
            except ChildFailedError as err:
                raise failure_of(err.failures, launch, folder, times) from None
            except SignalException as err:  # Ctrl-C or a kill while the agent ran: the ranks are stopped
                if err.sigval == signal.SIGINT:
                    raise KeyboardInterrupt from err
                raise SystemExit(128 + int(err.sigval)) from err
        add_timings(times, launch, 0)
        return json.loads(launch.results.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(launch.work, ignore_errors=True)


def read_report(launch: LocalLaunch, rank: int) -> dict | None:
    """What rank `rank` wrote about its failure (worker.py), None when it died without a word."""
    try:
        return json.loads(launch.failure(rank).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def add_timings(times: PhaseTimes, launch: LocalLaunch, rank: int) -> None:
    """Rank `rank`'s phase seconds (from its results or failure report) into the cell's `times`."""
    source = launch.results if launch.results.is_file() and rank == 0 else launch.failure(rank)
    try:
        timings = json.loads(source.read_text(encoding="utf-8")).get("timings") or {}
    except (OSError, ValueError):
        return
    for name, seconds in timings.items():
        times.add(name, seconds)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a rank's log, joined on one line."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def failure_of(failures: dict, launch: LocalLaunch, folder: RunFolder, times: PhaseTimes) -> Exception:
    """The job's failure from the agent's `failures` (rank -> ProcessFailure): the first rank that failed by
    itself (not one stopped because another died). Rank 0's known failures keep their kind: a UserError stays
    one, a full disk stays a full disk (it stops a sweep); anything else is `RankFailed`."""
    reports = {rank: read_report(launch, rank) for rank in failures}

    def order(rank: int) -> tuple[bool, bool, float, int]:
        code = failures[rank].exitcode
        # stopped by the agent (its SIGTERM, raised as RankFailed or not yet handled) comes last; a rank that
        # exited by itself comes before one killed by a signal (out of memory: SIGKILL)
        stopped = bool(reports[rank] and reports[rank].get("stopped")) or code == -signal.SIGTERM
        return stopped, code < 0, failures[rank].timestamp, rank

    rank = min(failures, key=order)
    report, code = reports[rank], failures[rank].exitcode
    add_timings(times, launch, 0)
    if report is not None and code == EXIT_USER_ERROR:
        return UserError(report["error"])
    if report is not None and report.get("disk_full") is not None:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), report["disk_full"] or None)
    if rank == 0 and report is not None:
        return RankFailed(f"rank 0 failed: {report['error']}")
    log_file = folder.rank_log(rank)
    return RankFailed(f"rank {rank} exited with code {code} ({log_file}: {tail(log_file)})")
