"""What one job leaves behind in the process that runs it, and how a rank learns that its job is over.

- `restored_env`, `process_group_scope`: the next job of a `-m` sweep (same process) starts clean.
- `stopped_by_launcher`: under torchrun (and our local launch, which uses torch's elastic agent too), the agent
  stops the other ranks with SIGTERM when one dies; rank 0 turns that, or a collective broken by the dead peer,
  into `RankFailed`, so the failure policy records the cell and prints one `error:` line.
"""

from __future__ import annotations

import os
import signal
import threading
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


def broken_collective(err: BaseException | None) -> BaseException | None:
    """The torch.distributed error behind `err` (a collective or store that lost a peer), or None."""
    while err is not None:
        if isinstance(err, torch.distributed.DistError):
            return err
        err = err.__cause__ or err.__context__
    return None


@contextmanager
def stopped_by_launcher() -> Iterator[None]:
    """For a rank of a multi-process job: SIGTERM (the launcher stopping the job) raises `RankFailed`, and so
    does a collective broken by a dead peer; the process's own errors go through unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame) -> None:
        raise RankFailed(STOPPED)

    previous = signal.signal(signal.SIGTERM, on_sigterm)  # Lightning's fit calls it after its own handler
    try:
        yield
    except RankFailed:
        raise
    except Exception as err:
        broken = None if isinstance(err, UserError) else broken_collective(err)
        if broken is None:
            raise
        first_line = (str(broken).strip().splitlines() or [type(broken).__name__])[0]
        raise RankFailed(f"a collective failed, another rank died or left ({first_line})") from err
    finally:
        signal.signal(signal.SIGTERM, previous)
