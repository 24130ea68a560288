"""The per-epoch log line: mean training loss as the module computed it (Lightning divides what it hands to
callbacks by the accumulation steps), the epoch's validation metric, never the sanity check's."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from clinical_ner.training.callbacks import EpochLine


def trainer(accumulate: int = 4, f1: float = 0.5, sanity: bool = False):
    metrics = {"val/f1": torch.tensor(f1)}
    return SimpleNamespace(
        accumulate_grad_batches=accumulate, callback_metrics=metrics, sanity_checking=sanity
    )


def test_the_line_averages_the_unscaled_loss_and_names_the_epochs_dev_f1():
    line, t = EpochLine(), trainer()
    line.on_fit_start(t, None)
    line.on_validation_end(trainer(sanity=True, f1=0.9), None)  # the sanity check is no epoch's score
    line.on_train_epoch_start(t, None)
    for loss in (1.0, 3.0):
        line.on_train_batch_end(t, None, {"loss": torch.tensor(loss / 4)}, None, 0)
    assert line.line(0, 3) == "epoch 1/3: train loss 2.0000, dev F1 not validated, 0.0 min"
    line.on_validation_end(t, None)
    assert line.line(0, 3) == "epoch 1/3: train loss 2.0000, dev F1 0.5000, 0.0 min"
    line.on_train_epoch_start(t, None)  # a new epoch starts from nothing
    assert line.line(1, -1) == "epoch 2: train loss -, dev F1 not validated, 0.0 min"
