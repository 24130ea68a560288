"""Progress bars: on every long job when stderr is a terminal, none when it is not (sweeps, CI, log files).

Training shows Lightning's TQDMProgressBar (clinical_ner/training/callbacks.py:`progress_bars`); our own loops (generation, tagging, downloads) use tqdm too, so every bar looks alike, like the ones
transformers draws. `trainer.enable_progress_bar` and `pretrain.trainer.enable_progress_bar` are null by
default, meaning "when stderr is a terminal"; true or false force them.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def wanted(setting: bool | None = None) -> bool:
    """Whether to show bars: `setting` when given, else whether stderr is a terminal."""
    return sys.stderr.isatty() if setting is None else bool(setting)


def quiet_libraries(setting: bool | None = None) -> None:
    """Silence the bars transformers and huggingface_hub draw by themselves (loading and writing weights) when
    bars are not wanted: a log file gets no bar from anyone."""
    if wanted(setting):
        return
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()


def bar(
    iterable=None,
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    enabled: bool | None = None,
    **options,
):
    """A tqdm bar on stderr (a no-op wrapper when not `wanted(enabled)`); it disappears when done. `options`
    go to tqdm (e.g. `unit_scale=True` for bytes, `initial=` for a resumed download)."""
    return tqdm(
        iterable,
        desc=desc,
        unit=unit,
        total=total,
        disable=not wanted(enabled),
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        **options,
    )
