"""Small Lightning callbacks no library provides in this form."""

from __future__ import annotations

import time

import lightning as L


class TrainStepTimer(L.Callback):
    """Seconds spent inside training batches (validation excluded) and the real tokens they held."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.tokens = 0
        self._start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.tokens += int(batch["attention_mask"].sum())

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
