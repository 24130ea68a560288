"""`clinical_ner.checks.recheck`: a rerun against its committed cell (a committed study cell as the fixture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinical_ner.checks.recheck import main, recheck

ROOT = Path(__file__).resolve().parents[2]
CELL = ROOT / "results/real_weights/tokencls/smollm2-none-small-s42/results.json"


@pytest.fixture
def committed(tmp_path):
    """A committed folder holding the real seed-42 cell and its seed-43 neighbour."""
    folder = tmp_path / "committed"
    for seed in (42, 43):
        source = CELL.parent.parent / f"smollm2-none-small-s{seed}" / "results.json"
        target = folder / "tokencls" / source.parent.name / "results.json"
        target.parent.mkdir(parents=True)
        target.write_text(source.read_text())
    return folder


def rerun(tmp_path: Path, change=None) -> Path:
    """The seed-42 cell as a rerun from newer code would write it, changed by `change(data)`."""
    data = json.loads(CELL.read_text())
    data["code"] = {"hash": "f" * 64, "commit": "0" * 40, "dirty": False}
    data["train"]["seconds"] = 1.0  # wall clock: never compared
    if change:
        change(data)
    folder = tmp_path / "rerun" / "smollm2-none-small-s42"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(data))
    return folder


def test_an_identical_rerun_from_other_code_is_reproduced(tmp_path, committed):
    code, lines = recheck(rerun(tmp_path), committed)
    assert code == 0
    assert "smollm2-none-small-s42 (test F1 0.7379" in lines[1]
    assert lines[-1].startswith("reproduced: all ") and "note:" not in "".join(lines)


def test_one_document_s_count_differing_is_named(tmp_path, committed):
    def change(data):
        doc = sorted(data["test"]["per_document"])[0]
        data["test"]["per_document"][doc][0] += 1

    code, lines = recheck(rerun(tmp_path, change), committed)
    assert code == 1
    assert any(line.strip().startswith("test.per_document.") and "!=" in line for line in lines)
    assert lines[-1].startswith("not reproduced: 1 of ")


def test_another_machine_is_said(tmp_path, committed):
    def change(data):
        data["machine"]["cpu"] = "AMD EPYC"
        data["test"]["f1"] = 0.75

    code, lines = recheck(rerun(tmp_path, change), committed)
    assert code == 1
    assert any(line.strip().startswith("test.f1: 0.75 != 0.737") for line in lines)
    assert any(line.startswith("note: computed on another machine") for line in lines)


def test_no_cell_of_the_config_is_one_error_line_naming_the_nearest_cell_s_keys(tmp_path, committed, capsys):
    def change(data):
        data["config"]["optim"]["lr"] = 1.0

    with pytest.raises(SystemExit) as exit_:
        main([str(rerun(tmp_path, change)), "--committed", str(committed)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "smollm2-none-small-s42/results.json differs in optim.lr" in err


def test_a_committed_cell_is_not_its_own_rerun(committed):
    with pytest.raises(Exception, match="none of the same approach, corpus and seed"):
        recheck(committed / "tokencls/smollm2-none-small-s42", committed)
