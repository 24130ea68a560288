"""Progress bars: on every long job when stderr is a terminal; when it is not (sweeps, CI, SLURM, log files), a
log line every LOG_EVERY_SECONDS instead, so an hour-long phase still shows where it is and what is left.

Training shows Lightning's TQDMProgressBar (clinical_ner/training/callbacks.py:`progress_bars`); our own loops (generation, tagging, downloads) use tqdm too, so every bar looks alike, like the ones
transformers draws. `trainer.enable_progress_bar` and `pretrain.trainer.enable_progress_bar` are null by
default, meaning "when stderr is a terminal"; true or false force them.
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

log = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 120.0  # an hour-long phase writes ~30 lines
# what a log line says in place of a bar (tqdm fills the fields), with and without a known total
LOG_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} so far, about {remaining} left"
)
LOG_FORMAT_OPEN = "{desc}: {n_fmt} {unit}, {elapsed} so far"


class _LogLines:
    """A file for tqdm that logs each status it writes as one line (tqdm writes `\\r` + status, and blanks the
    line when it closes: those blanks are dropped)."""

    def write(self, text: str) -> int:
        line = text.strip("\r\n ")
        if line:
            log.info(line)
        return len(text)

    def flush(self) -> None:
        pass


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
    """A tqdm bar on stderr when `wanted(enabled)`, else the same progress as a log line every LOG_EVERY_SECONDS
    (none for a job shorter than that); it disappears when done. `options` go to tqdm (e.g. `unit_scale=True` for bytes,
    `initial=` for a resumed download)."""
    common = {"desc": desc, "unit": unit, "total": total, "leave": False, **options}
    if wanted(enabled):
        return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **common)
    # maxinterval too: tqdm's monitor thread would otherwise force a line every 10 s on slow iterations
    every = {"delay": LOG_EVERY_SECONDS, "mininterval": LOG_EVERY_SECONDS, "maxinterval": LOG_EVERY_SECONDS}
    known = total is not None or hasattr(iterable, "__len__")
    return tqdm(
        iterable, file=_LogLines(), bar_format=LOG_FORMAT if known else LOG_FORMAT_OPEN, **every, **common
    )
