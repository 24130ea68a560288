"""What one job leaves behind in the process that runs it, and how a rank learns that its job is over.

- `restored_env`, `process_group_scope`: the next job of a `-m` sweep (same process) starts clean.
- `stopped_by_launcher`: under torchrun (and our local launch, which uses torch's elastic agent too), the agent
  stops the other ranks with SIGTERM when one dies; rank 0 turns that into `RankFailed` (also when a collective
  broken by the dead peer failed first), so the failure policy records the cell and prints one `error:` line.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import torch

from clinical_ner.errors import RankFailed, UserError

# variables a launch sets (ours, torch's agent or Lightning's); restored after each job so sweep jobs do not
# inherit them
LAUNCH_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "OMP_NUM_THREADS",
    "TORCHELASTIC_USE_AGENT_STORE",
    "TORCHELASTIC_SIGNALS_TO_HANDLE",
)
LAUNCHER_GRACE_S = 15.0  # torchrun's agent looks at its ranks every 0.1-5 s (--monitor_interval)
STOPPED = "stopped by the launcher (SIGTERM): another rank died or the job was cancelled"


@contextmanager
def restored_env(names: tuple[str, ...] = LAUNCH_ENV) -> Iterator[None]:
    """Put `names` back as they were (Lightning's launcher, for one, leaves LOCAL_RANK and friends set)."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def process_group_scope() -> Iterator[None]:
    """Destroy the process group a job created (Lightning keeps it), so the next sweep job makes its own."""
    existed = torch.distributed.is_available() and torch.distributed.is_initialized()
    try:
        yield
    finally:
        if not existed and torch.distributed.is_available() and torch.distributed.is_initialized():
            with suppress(Exception):  # a group broken by a dead rank may refuse a clean destroy
                torch.distributed.destroy_process_group()


@contextmanager
def stopped_by_launcher(grace_s: float = LAUNCHER_GRACE_S) -> Iterator[None]:
    """For a rank of a job whose launcher stops every rank with SIGTERM when one dies (torchrun, our local
    launch): SIGTERM raises `RankFailed`. When this rank fails first by itself (gloo raises as soon as a peer
    is gone), it waits `grace_s` for that SIGTERM: if it comes, a dead peer was the cause (`RankFailed`);
    if not, its own error goes through unchanged. A UserError always goes through at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame) -> None:
        raise RankFailed(STOPPED)

    previous = signal.signal(signal.SIGTERM, on_sigterm)  # Lightning's fit calls it after its own handler
    try:
        yield
    except (RankFailed, UserError):
        raise
    except Exception as err:
        try:
            time.sleep(grace_s)  # the launcher's SIGTERM, if another rank died, raises in here
        except RankFailed as stopped:  # what this rank saw was a symptom: kept as the cause, in its log
            raise stopped from err
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
