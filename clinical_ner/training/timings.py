"""Phase timings of a run: `with phase("fit"):` adds the wall seconds of a phase to the active recorders and
logs `phase fit: 123.4 s` when it ends (and `phase fit started` when it starts, if stderr is no terminal); `results.json` keeps the run's recorder as its `timings` section.

`run.pipeline.run` opens one recorder for the whole run (`recording`); a stage may open its own inside it (continual
pretraining sums its phases that way), and phases record into every open recorder, so nothing passes a timer
around. Phases never nest, so their sum is at most the run's wall time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import torch

from clinical_ner.console import progress

log = logging.getLogger(__name__)


@dataclass
class Elapsed:
    """What `phase` yields: its seconds once the phase has ended."""

    seconds: float = 0.0


@dataclass
class PhaseTimes:
    """Seconds per phase name, in the order the phases first ended (a repeated phase adds up)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        """Count `seconds` more for phase `name`."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @property
    def total(self) -> float:
        """Seconds in all phases together."""
        return sum(self.seconds.values())

    def as_dict(self) -> dict[str, float]:
        """The `timings` section of results.json."""
        return dict(self.seconds)


_open: ContextVar[tuple[PhaseTimes, ...]] = ContextVar("clinical_ner_phase_times", default=())
_active: ContextVar[str | None] = ContextVar("clinical_ner_active_phase", default=None)


@contextmanager
def recording(times: PhaseTimes | None = None) -> Iterator[PhaseTimes]:
    """Open `times` (a new recorder when None): every phase that ends while the block runs is added to it."""
    times = times if times is not None else PhaseTimes()
    token = _open.set((*_open.get(), times))
    try:
        yield times
    finally:
        _open.reset(token)


@contextmanager
def phase(name: str) -> Iterator[Elapsed]:
    """Time the block as phase `name` in every open recorder (none outside a run); queued GPU work is waited
    for at the end, so the seconds are the phase's own. A failing phase is still counted."""
    outer = _active.get()
    if outer is not None:
        raise RuntimeError(f"phase {name!r} started inside phase {outer!r}: phases do not nest")
    token = _active.set(name)
    if not progress.wanted():  # no bar will show this phase is running (nohup, a sweep, CI): a line does
        log.info("phase %s started", name)
    elapsed = Elapsed()
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        _synchronize()
        elapsed.seconds = time.perf_counter() - start
        _active.reset(token)
        for times in _open.get():
            times.add(name, elapsed.seconds)
        log.info("phase %s: %.1f s", name, elapsed.seconds)


def _synchronize() -> None:
    # CUDA kernels run asynchronously: without this a phase's queued work would be billed to the next one
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
