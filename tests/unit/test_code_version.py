"""Cells of another code version are never reused unless asked: results.json records `code` (a hash of the
package source and conf/ only, the commit, the dirty flag) and skips/resumes compare it."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

from clinical_ner.run.record.code_version import code_hash, code_version, git_state, hashed_files
from clinical_ner.run.sweep import finished_results, prepare_run_dir, record_checkpoint_config, stale_reason

CONFIG = {"seed": 1, "optim": {"lr": 0.001}}
OLD_CODE = {"hash": "0" * 64, "commit": None, "dirty": None}


def _tree(root: Path) -> None:
    for name, text in {
        "clinical_ner/a.py": "x = 1\n",
        "clinical_ner/sub/b.py": "y = 2\n",
        "conf/train.yaml": "seed: 42\n",
        "README.md": "# readme\n",
        "docs/d.md": "doc\n",
        "tests/test_a.py": "def test(): pass\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_the_hash_covers_package_source_and_configs_only(tmp_path):
    _tree(tmp_path)
    assert [p.as_posix() for p in hashed_files(tmp_path)] == [
        "clinical_ner/a.py",
        "clinical_ner/sub/b.py",
        "conf/train.yaml",
    ]
    before = code_hash(tmp_path)
    for name in ("README.md", "docs/d.md", "tests/test_a.py"):
        (tmp_path / name).write_text("edited\n")
    (tmp_path / "clinical_ner" / "__pycache__").mkdir()
    (tmp_path / "clinical_ner" / "__pycache__" / "a.py").write_text("cache\n")
    assert code_hash(tmp_path) == before
    (tmp_path / "conf" / "train.yaml").write_text("seed: 43\n")
    assert code_hash(tmp_path) != before


def test_commit_and_dirty_flag(tmp_path):
    _tree(tmp_path)
    assert git_state(tmp_path) == (None, None)  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    commit, dirty = git_state(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "README.md").write_text("edited\n")
    assert git_state(tmp_path)[1] is False  # outside what the hash covers
    (tmp_path / "clinical_ner" / "a.py").write_text("x = 3\n")
    assert git_state(tmp_path) == (commit, True)


def test_this_process_has_one_code_version():
    version = code_version()
    assert set(version) == {"hash", "commit", "dirty"} and len(version["hash"]) == 64
    assert version["hash"] == code_hash()


def _results(run: Path, code: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    record = {"status": "complete", "config": CONFIG, "test": {"f1": 0.5}, "code": code}
    (run / "results.json").write_text(json.dumps(record))


def test_a_complete_cell_of_older_code_is_redone_not_reused(tmp_path, caplog):
    run = tmp_path / "run"
    _results(run, OLD_CODE)
    assert finished_results(run, CONFIG) is None
    assert "another code version" in stale_reason(run, CONFIG)
    with caplog.at_level(logging.WARNING):
        assert prepare_run_dir(run, CONFIG) is None
    assert len(list(run.glob("stale-*/results.json"))) == 1 and not (run / "results.json").exists()
    (line,) = [r.getMessage() for r in caplog.records if "rerun:" in r.getMessage()]
    assert "another code version (000000000000 ->" in line


def test_a_record_without_code_counts_as_another_version(tmp_path):
    run = tmp_path / "run"
    _results(run, OLD_CODE)
    record = json.loads((run / "results.json").read_text())
    del record["code"]
    (run / "results.json").write_text(json.dumps(record))
    assert finished_results(run, CONFIG) is None


def test_reuse_other_code_keeps_the_cell_and_says_so(tmp_path, caplog):
    run = tmp_path / "run"
    _results(run, OLD_CODE)
    with caplog.at_level(logging.WARNING):
        assert finished_results(run, CONFIG, reuse_other_code=True)["test"]["f1"] == 0.5
    (line,) = [r.getMessage() for r in caplog.records if "reuse:" in r.getMessage()]
    assert "sweep.reuse_other_code=true" in line
    _results(run, code_version())
    assert finished_results(run, CONFIG) is not None  # this code: reused silently


def test_checkpoints_of_older_code_are_not_resumed(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    record_checkpoint_config(run, CONFIG)
    assert prepare_run_dir(run, CONFIG) == run / "checkpoints" / "last.ckpt"
    record = json.loads((run / "checkpoints.json").read_text())
    (run / "checkpoints.json").write_text(json.dumps({**record, "code_hash": OLD_CODE["hash"]}))
    assert prepare_run_dir(run, CONFIG, reuse_other_code=True) == run / "checkpoints" / "last.ckpt"
    assert prepare_run_dir(run, CONFIG) is None
    assert len(list(run.glob("stale-*/checkpoints/last.ckpt"))) == 1


def test_the_reuse_flag_is_no_part_of_the_cell():
    from clinical_ner.config import compose_config, public_config
    from clinical_ner.config.compare import config_hash

    plain = public_config(compose_config([]))
    flagged = public_config(compose_config(["sweep.reuse_other_code=true"]))
    assert config_hash(plain) == config_hash(flagged)
