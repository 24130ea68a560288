"""Every training epoch gets its own seeded batch order under a real Lightning Trainer (Lightning calls
`set_epoch` on samplers only, never on our batch sampler: BatchSamplerEpoch does), and a resumed run replays the
order of the epoch it resumes in (the pipeline's resume: tests/e2e/test_checkpoints.py)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.data.batching import Batching
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.models.tokenizer import train_tokenizer
from clinical_ner.training.callbacks import BatchSamplerEpoch, LastCheckpoint


def datamodule() -> TokenClsDataModule:
    splits = synthetic_splits(n_train=40, n_dev=2, n_test=2)
    tokenizer = train_tokenizer("byte_level_bpe", 600, [d.text for d in splits["train"]])
    types = sorted({s.type for d in splits["train"] for s in d.spans})
    label2id = {label: i for i, label in enumerate(bio_labels(types))}
    return TokenClsDataModule(splits, tokenizer, label2id, Windowing("last", 64, 8), Batching(4, 4, seed=3))


class Recorder(L.LightningModule):
    """Records each training batch (its token ids) under the epoch it was seen in."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[tuple]] = {}

    def training_step(self, batch, batch_idx):
        self.seen.setdefault(self.current_epoch, []).append(
            tuple(batch["input_ids"][:, :4].flatten().tolist())
        )
        return (self.weight**2).sum() + 0 * batch["input_ids"].float().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(tmp_path, epochs: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        callbacks=[BatchSamplerEpoch(), *callbacks],
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, **kwargs,
    )  # fmt: skip


def test_each_epoch_has_its_own_order(tmp_path):
    module = Recorder()
    trainer(tmp_path, 2, enable_checkpointing=False).fit(module, datamodule=datamodule())
    first, second = module.seen[0], module.seen[1]
    assert sorted(r for b in first for r in b) == sorted(r for b in second for r in b)  # the same windows
    assert first != second


def test_a_resumed_run_sees_the_order_of_the_epoch_it_resumes(tmp_path):
    whole = Recorder()
    trainer(tmp_path / "whole", 2, enable_checkpointing=False).fit(whole, datamodule=datamodule())
    stopped = Recorder()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path / "a", 1, callbacks=[checkpoint]).fit(stopped, datamodule=datamodule())
    resumed = Recorder()
    trainer(tmp_path / "b", 2, enable_checkpointing=False).fit(
        resumed, datamodule=datamodule(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
    )
    assert stopped.seen[0] == whole.seen[0]
    assert resumed.seen == {1: whole.seen[1]}


@pytest.mark.parametrize("stop", [3, 2 * 4 + 3])  # batches trained before the stop: mid epoch 0, mid epoch 2
def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch(tmp_path, stop):
    """`max_steps` ends a run mid-epoch; its last.ckpt resumes with the batch after the last one trained, not
    with the epoch's first batches again."""
    data = datamodule()
    per_epoch = len(data.train_dataloader())
    assert per_epoch > 4, "the synthetic split must give several batches per epoch"
    stop = stop if stop < per_epoch else per_epoch + 3
    whole = Recorder()
    trainer(tmp_path / "whole", 2, enable_checkpointing=False).fit(whole, datamodule=datamodule())
    last = tmp_path / "ckpt" / "last.ckpt"
    stopped = Recorder()
    trainer(tmp_path / "a", 2, callbacks=[LastCheckpoint(last)], max_steps=stop).fit(
        stopped, datamodule=datamodule()
    )
    resumed = Recorder()
    trainer(tmp_path / "b", 2, enable_checkpointing=False).fit(
        resumed, datamodule=datamodule(), ckpt_path=str(last)
    )
    epoch, done = divmod(stop, per_epoch)
    assert resumed.seen[epoch] == whole.seen[epoch][done:]
    assert [b for e in sorted(stopped.seen) for b in stopped.seen[e]] + [
        b for e in sorted(resumed.seen) for b in resumed.seen[e]
    ] == [b for e in sorted(whole.seen) for b in whole.seen[e]]
