"""Where the ranks of a local multi-process job (clinical_ner/run/ranks.py) meet around training.

Before training forms the process group, rank 0 waits for the ranks it started in Python (`ranks_ready`), so a
rank that died on the way (out of memory while loading, an error) fails the job at once instead of leaving rank
0 in torch's rendezvous, which waits where nothing can interrupt it until its 30-minute timeout. After training
(`ranks_done`) no collective follows, so rank 0 stops watching the others.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch

from clinical_ner.run.record.folder import RANK_LOG

READY_KEY = "clinical_ner/ready"  # in the job's store: how many ranks > 0 reached training
RENDEZVOUS_TIMEOUT = timedelta(minutes=30)  # Lightning's default process-group timeout


class RankFailed(RuntimeError):
    """A rank > 0 of this job died (or never reached training): the job fails, a sweep goes on."""


@dataclass
class LocalLaunch:
    """The local multi-process job this process is part of: the job's store; on rank 0 also the other ranks,
    their log folder and what to call once training is over."""

    store: torch.distributed.TCPStore
    world: int
    procs: list[subprocess.Popen] | None = None  # None on ranks > 0
    logs: Path | None = None
    on_done: Callable[[], None] | None = None


launch: LocalLaunch | None = None  # set by clinical_ner/run/ranks.py for the duration of a job


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def dead_rank(procs: list[subprocess.Popen], logs: Path) -> tuple[str, int] | None:
    """(message with the last lines of its log, exit code) of the first rank > 0 that exited with an error,
    None while none has."""
    for rank, proc in enumerate(procs, 1):
        code = proc.poll()
        if code not in (None, 0):
            log_file = logs / RANK_LOG.format(rank=rank)
            return f"rank {rank} exited with code {code} ({log_file}: {_tail(log_file)})", code
    return None


def ranks_ready(timeout: timedelta = RENDEZVOUS_TIMEOUT) -> None:
    """Call on every rank right before training forms the process group: ranks > 0 say they got there, rank 0
    waits for them and raises `RankFailed` when one died first. A no-op outside local multi-process jobs."""
    current = launch
    if current is None:
        return
    if current.procs is None:
        current.store.add(READY_KEY, 1)
        return
    deadline = time.monotonic() + timeout.total_seconds()
    while current.store.add(READY_KEY, 0) < current.world - 1:
        dead = dead_rank(current.procs, current.logs or Path("."))
        if dead is not None:
            raise RankFailed(dead[0])
        if time.monotonic() > deadline:
            raise RankFailed(f"ranks > 0 did not reach training within {timeout}")
        time.sleep(0.2)


def ranks_done() -> None:
    """Call on every rank when training is over: no collective follows, so rank 0 stops watching the others (a
    rank that then exits with an error is reported at the end of the job, not fatal to rank 0's results)."""
    current = launch
    if current is not None and current.on_done is not None:
        current.on_done()
