"""The `clinical-ner` front door (clinical_ner/cli.py): every command listed, each dispatching to its module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ner import cli

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_help_lists_every_command_with_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, summary) in cli.COMMANDS.items():
        assert f"  {name}" in out and summary in out
    assert len(out.splitlines()) == 3 + len(cli.COMMANDS)


def test_every_command_resolves_to_a_callable():
    for name in cli.COMMANDS:
        assert callable(cli.resolve(name)), name


def test_train_is_the_same_function_as_python_m_clinical_ner_train():
    from clinical_ner import train

    assert cli.resolve("train") is train.main


@pytest.mark.parametrize("name", [n for n in cli.COMMANDS if n != "train"])
def test_each_command_help_is_its_own(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "-h, --help" in out


def test_unknown_command_is_one_error_line(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'trian'") and err.count("\n") == 1


def test_commands_run_with_their_arguments(tmp_path, capsys):
    assert cli.main(["synthetic", "--out", str(tmp_path / "corpus"), "--n-train", "3"]) == 0
    assert len(list((tmp_path / "corpus" / "train").glob("*.ann"))) == 3
    gold = str(tmp_path / "corpus" / "dev")
    capsys.readouterr()
    assert cli.main(["evaluate", gold, gold, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == 1.0
    with pytest.raises(SystemExit) as exit_:  # a user error keeps its exit code through the front door
        cli.main(["evaluate", str(tmp_path / "missing"), gold])
    assert exit_.value.code == 2


def test_python_m_clinical_ner_and_train_help():
    top = subprocess.run(
        [sys.executable, "-m", "clinical_ner", "--help"], env=ENV, capture_output=True, text=True
    )
    assert top.returncode == 0 and "train" in top.stdout
    train = subprocess.run(
        [sys.executable, "-m", "clinical_ner", "train", "--help"], env=ENV, capture_output=True, text=True
    )
    assert (
        train.returncode == 0 and "== Configuration groups ==" in train.stdout and "approach" in train.stdout
    )
