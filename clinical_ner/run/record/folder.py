"""The one owner of a run folder's layout: every path a run writes or reads inside it is named here.

```
<run dir>/
  results.json              RunFolder.results           the run's record (clinical_ner/run/record/results.py)
  model/                    RunFolder.model             save_pretrained weights + tokenizer + INFERENCE_FILE
  predictions/<split>/      RunFolder.predictions(s)    one BRAT .ann per document
  checkpoints/              RunFolder.checkpoints       best-<epoch>.ckpt (best dev F1) and last.ckpt (resume)
  checkpoints.json          RunFolder.checkpoint_config the hash of the config that wrote checkpoints/
  stale-<time>/             RunFolder.stale(time)       what a run of another config left here (moved aside)
  pretrain/                 RunFolder.pretrain          the continual-pretraining Trainer's root folder
  csv/, csv_pretrain/       CSV_DIR, CSV_PRETRAIN_DIR   logger=csv metrics of fine-tuning / pretraining
  wandb/                    RunFolder.wandb             the W&B run (offline unless asked)
  errors-<split>[-compare].html RunFolder.error_page(s)  the error-analysis page (clinical_ner.analysis.error_page)
  ranks/rank-<n>.log        RunFolder.rank_log(n)       what ranks > 0 of a multi-device job printed
  train.log, .hydra/        (Hydra's own)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RESULTS_FILE = "results.json"
MODEL_DIR = "model"  # <run dir>/model: the saved weights, tokenizer and INFERENCE_FILE
INFERENCE_FILE = "clinical_ner.json"  # decoding settings saved beside the weights
PREDICTIONS_DIR = "predictions"  # <run dir>/predictions/<split>/<doc>.ann
CHECKPOINTS_DIR = "checkpoints"
BEST_CHECKPOINT = "best-{epoch:02d}"  # a ModelCheckpoint filename pattern (.ckpt is added)
LAST_CHECKPOINT = "last.ckpt"  # Lightning's `save_last` name
PRETRAIN_DIR = "pretrain"
CSV_DIR = "csv"
CSV_PRETRAIN_DIR = "csv_pretrain"  # apart, so fine-tuning's metrics.csv does not overwrite pretraining's
WANDB_DIR = "wandb"  # made by W&B itself under the save_dir it is given (the run dir)
RANK_LOGS = "ranks"  # <run dir>/ranks/rank-<n>.log: what ranks > 0 printed
RANK_LOG = "rank-{rank}.log"
CHECKPOINT_CONFIG = "checkpoints.json"  # beside checkpoints/: a resume must match the config hash it holds
STALE_PREFIX = "stale-"  # <run dir>/stale-<time>/: never read by reports
ERROR_PAGE = "errors-{split}.html"  # written on request only: it holds clinical text
ERROR_PAGE_COMPARE = "errors-{split}-compare.html"  # this run beside others
HYDRA_ENTRIES = (".hydra", "train.log")  # Hydra's own, of the job now running in the folder


def is_stale(path: Path | str, root: Path | str) -> bool:
    """True when `path` lies in a `stale-*` folder below `root` (an earlier run of another config)."""
    return any(part.startswith(STALE_PREFIX) for part in Path(path).relative_to(root).parts)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is created here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def results(self) -> Path:
        return self.root / RESULTS_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR

    def predictions(self, split: str) -> Path:
        return self.root / PREDICTIONS_DIR / split

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def pretrain(self) -> Path:
        return self.root / PRETRAIN_DIR

    @property
    def wandb(self) -> Path:
        return self.root / WANDB_DIR

    @property
    def ranks(self) -> Path:
        return self.root / RANK_LOGS

    def rank_log(self, rank: int) -> Path:
        return self.ranks / RANK_LOG.format(rank=rank)

    def error_page(self, split: str, compare: bool = False) -> Path:
        """The error-analysis page of `split` (`compare`: this run beside others)."""
        return self.root / (ERROR_PAGE_COMPARE if compare else ERROR_PAGE).format(split=split)

    @property
    def checkpoint_config(self) -> Path:
        return self.root / CHECKPOINT_CONFIG

    def stale(self, stamp: str) -> Path:
        return self.root / f"{STALE_PREFIX}{stamp}"
