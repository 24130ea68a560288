"""The failure policy of a training job (clinical_ner/run/task.py): record, one line, exit code; a sweep goes on."""

from __future__ import annotations

import errno
import json

import pytest

from clinical_ner.config import compose_config
from clinical_ner.errors import RankFailed, UserError
from clinical_ner.run import task


def _raises(err: Exception):
    def raise_():
        raise err

    return raise_


FAILURES = {  # what the job raises -> the error its record holds
    "user": (_raises(UserError("data.root: no such folder")), "data.root: no such folder"),
    "rank": (_raises(RankFailed("rank 1 exited")), "RankFailed: rank 1 exited"),
    "disk": (
        _raises(OSError(errno.ENOSPC, "No space left on device", "/cell/last.ckpt")),
        "no space left on device writing /cell/last.ckpt",
    ),
    "bug": (_raises(ZeroDivisionError("division by zero")), "ZeroDivisionError: division by zero"),
}
EXIT = {"user": 2, "rank": 1, "disk": 1, "bug": None}  # None: the traceback (the exception propagates)


def _job(tmp_path, raise_):
    @task.task_wrapper
    def job(cell):
        cell.times.add("load_corpus", 1.5)  # a phase the job got through before failing
        raise_()

    return job, compose_config([f"output_dir={tmp_path}", "logger=none", "data=synthetic"])


@pytest.mark.parametrize("kind", FAILURES)
def test_a_failed_job_is_recorded_and_ends_with_its_exit_code(kind, tmp_path, monkeypatch, capsys):
    raise_, error = FAILURES[kind]
    job, cfg = _job(tmp_path, raise_)
    monkeypatch.setattr(task, "in_multirun", lambda: False)
    if EXIT[kind] is None:
        with pytest.raises(ZeroDivisionError):
            job(cfg)
    else:
        with pytest.raises(SystemExit) as ended:
            job(cfg)
        assert ended.value.code == EXIT[kind]
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and error in lines[0]
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and record["error"] == error and record["approach"] == "tokencls"
    assert record["timings"] == {"load_corpus": 1.5}


@pytest.mark.parametrize("kind", FAILURES)
def test_in_a_sweep_only_a_full_disk_stops_it(kind, tmp_path, monkeypatch, capsys):
    raise_, error = FAILURES[kind]
    job, cfg = _job(tmp_path, raise_)
    monkeypatch.setattr(task, "in_multirun", lambda: True)
    if kind == "disk":
        with pytest.raises(SystemExit):
            job(cfg)
    else:
        assert job(cfg) is None  # the cell failed; the sweep goes on
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(error + ("" if kind != "disk" else task.DISK_FULL_HINT))
    )
    assert json.loads((tmp_path / "results.json").read_text())["error"] == error


def test_a_job_that_succeeds_returns_its_value_and_writes_nothing(tmp_path):
    job = task.task_wrapper(lambda cell: {"dev": {"f1": 0.5}})
    assert job(compose_config([f"output_dir={tmp_path}", "logger=none"])) == {"dev": {"f1": 0.5}}
    assert not (tmp_path / "results.json").exists()
