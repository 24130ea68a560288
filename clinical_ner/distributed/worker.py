"""One rank of a local multi-device job (clinical_ner/distributed/local.py), started by torch's elastic agent:
`python -m clinical_ner.distributed.worker CONFIG --output-dir WORK`.

Every rank runs the stages on the resolved config. Rank 0 writes the run folder and its results for the
supervisor; ranks > 0 write into scratch folders under WORK and print into `RUN/ranks/rank-N.log`. A failure
is reported in WORK for the supervisor, which records the cell.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from clinical_ner.distributed.local import LocalLaunch, load_config, with_output_dir
from clinical_ner.distributed.scope import process_group_scope, stopped_by_launcher
from clinical_ner.errors import RankFailed, disk_full, known_failure
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.timings import PhaseTimes


def exit_with_parent(poll_s: float = 1.0) -> None:
    """Exit as soon as the process that started this one is gone, so a killed supervisor (SIGKILL leaves it no
    time to stop the ranks) leaves no rank behind (a daemon thread watching the parent id)."""
    expected = os.getppid()

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(poll_s)
        os._exit(1)  # the parent is gone: nothing will collect this rank's work

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def to_log_file(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors, so native libraries too) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def report(err: Exception, times: PhaseTimes) -> tuple[dict, int]:
    """(the failure report for the supervisor, this process's exit code) of `err`."""
    known = known_failure(err)
    line, code = known if known is not None else (f"{type(err).__name__}: {err}", 1)
    if isinstance(err, RankFailed):
        line = f"RankFailed: {err}"
    full = disk_full(err)
    record = {
        "error": line,
        "stopped": isinstance(err, RankFailed),  # stopped because another rank died: not the cause
        "disk_full": None if full is None else (full.filename or ""),
        "timings": times.as_dict(),
    }
    return record, code


def main(argv: list[str] | None = None) -> int:
    """Run one rank; returns its exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--output-dir", type=Path, required=True, help="the job's scratch folder (WORK)")
    args = parser.parse_args(argv)
    exit_with_parent()
    rank = int(os.environ["RANK"])
    launch = LocalLaunch(args.output_dir)
    cfg = load_config(args.config)
    if rank > 0:
        to_log_file(RunFolder(cfg.output_dir).rank_log(rank))
        cfg = with_output_dir(cfg, launch.scratch(rank))
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from clinical_ner.run.pipeline import run  # the stages, on every rank

    times = PhaseTimes()
    try:
        with process_group_scope(), stopped_by_launcher():
            results = run(cfg, times)
    except Exception as err:
        record, code = report(err, times)
        if known_failure(err) is None and not isinstance(err, RankFailed):
            traceback.print_exc()  # a bug: its traceback, in the console (rank 0) or the rank's log
        elif rank > 0:
            print(f"error: rank {rank}: {record['error']}", file=sys.stderr)  # into its log
        launch.failure(rank).write_text(json.dumps(record), encoding="utf-8")
        return code
    if rank == 0:
        launch.results.write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
