"""The Makefile pins the code version the committed real-weights cells came from (STUDY_COMMIT, FORMATS_COMMIT):
`make reproduce-tables` and `make format-cells` run from worktrees of those commits so that later sittings pool
with the committed cells. A pin that drifts from the cells' recorded package hash would retrain every cell."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from clinical_ner.run.record.code_version import HASHED, code_hash

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "real_weights"
STUDY_FORMAT = "json"  # conf/experiment_approach/study_seq2seq.yaml: the study's seq2seq format


def _pin(name: str) -> str:
    match = re.search(rf"^{name} := (\w+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"Makefile defines {name}"
    return match.group(1)


def _hash_at(commit: str, tmp_path: Path) -> str:
    """The package hash of `commit`'s clinical_ner/ and conf/, read from git without touching the checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git history of the checkout")
    done = subprocess.run(
        ["git", "archive", commit, *(folder for folder, _ in HASHED)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone (shallow?)")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(tmp_path, filter="data")
    return code_hash(tmp_path)


def _cells(study: bool) -> list[dict]:
    cells = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*/*/results.json"))]
    return [c for c in cells if (c["config"]["approach"].get("format", "json") == STUDY_FORMAT) == study]


@pytest.mark.parametrize(("pin", "study"), [("STUDY_COMMIT", True), ("FORMATS_COMMIT", False)])
def test_pinned_commit_is_the_committed_cells_code(pin: str, study: bool, tmp_path: Path) -> None:
    cells = _cells(study)
    assert cells, f"committed cells for {pin}"
    pinned = _hash_at(_pin(pin), tmp_path)
    assert {c["code"]["hash"] for c in cells} == {pinned}


def test_reproduce_tables_runs_every_cell_in_the_pinned_worktree() -> None:
    if shutil.which("make") is None:
        pytest.skip("needs make")
    dry = subprocess.run(
        ["make", "-n", "reproduce-tables"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    tree, commit = "../clinical_ner-study", _pin("STUDY_COMMIT")
    assert f"git worktree add --detach {tree} {commit}" in dry.stdout
    trains = [line for line in dry.stdout.splitlines() if "clinical_ner.train" in line]
    assert len(trains) == 2  # the 24 cells, then the 4 free-decoding ones
    for line in trains:
        assert line.startswith(f"cd {tree} && ")
        assert f"committed_dir={RESULTS}" in line  # absolute: the worktree skips what main has committed
    assert f"clinical_ner.reports.export {tree}/multirun/study --to results/real_weights" in dry.stdout
