"""A full disk ends a run (and a sweep) with one line that says what to do, not a checkpoint-writer traceback."""

from __future__ import annotations

import errno
import json

import pytest

from clinical_ner import train as train_entry
from clinical_ner.config import compose_config
from clinical_ner.errors import disk_full


def _write_fails(*args, **kwargs):
    try:  # as Lightning's checkpoint writer does: the OSError is the context of what finally surfaces
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/cell/checkpoints/last.ckpt")
    except OSError as err:
        raise RuntimeError("checkpoint save failed") from err


def test_disk_full_is_found_behind_the_error_that_surfaces():
    with pytest.raises(RuntimeError) as caught:
        _write_fails()
    assert disk_full(caught.value).filename == "/runs/cell/checkpoints/last.ckpt"
    assert disk_full(RuntimeError("other")) is None
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None


def test_a_full_disk_is_one_line_exit_1_and_a_failed_record(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_entry, "run", _write_fails)
    cfg = compose_config([f"output_dir={tmp_path}", "logger=none", "data=synthetic"])
    with pytest.raises(SystemExit) as ended:
        train_entry.main.__wrapped__(cfg)
    assert ended.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no space left on device writing /runs/cell/checkpoints/last.ckpt" in lines[0]
    assert "resumes from the last checkpoint" in lines[0] and "Traceback" not in lines[0]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("no space left on device")


def test_every_other_command_ends_a_full_disk_with_one_line(capsys):
    from clinical_ner.errors import cli

    with pytest.raises(SystemExit) as ended:
        cli(_write_fails)()
    assert ended.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: no space left on device writing /runs/cell/checkpoints/last.ckpt; free disk space and run it again"
    ]
    with pytest.raises(ValueError):  # any other error stays a bug report with its traceback
        cli(lambda: int("x"))()
