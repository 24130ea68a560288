"""The error page of two real tiny runs, checked in headless Chromium: the marked mentions per category add up
to each run's recorded TP/FP/FN, the runs line up document by document, the text is the document's, no console
error; a screenshot is taken. The runs are real CLI runs with stderr redirected, so they also show the log
lines a run under nohup writes (one per phase, one per epoch)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest
from headless import chromium, dump_dom, screenshot

from clinical_ner.analysis import error_page

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["scale.hidden_size=64", "scale.num_layers=2", "scale.intermediate_size=128"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
DOCS = 8
pytestmark = [pytest.mark.slow, pytest.mark.corpus]


def cli_run(folder: Path, cache: Path, corpus: Path, *overrides: str) -> str:
    """A tiny token-classification run through the real command, stdout and stderr to a file (no terminal);
    returns what it printed."""
    log = folder.with_suffix(".log")
    with open(log, "w") as out:
        done = subprocess.run(
            [
                sys.executable, "-m", "clinical_ner.train", "approach=tokencls", "model=llama2", "corpus=none",
                f"data.root={corpus}", "data.train_limit=20", f"data.eval_limit={DOCS}", "trainer.max_epochs=2",
                "logger=none", "trainer.threads=1", f"output_dir={folder}", f"cache_dir={cache}", *SMALL, *overrides,
            ],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900,
        )  # fmt: skip
    printed = log.read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, printed[-3000:]
    return printed


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pharmaconer_dir) -> tuple[list[Path], list[str]]:
    """Two tiny runs (seeds 42 and 7) on the first training and test documents, and what each printed."""
    root = tmp_path_factory.mktemp("runs")
    folders = [root / "a", root / "b"]
    printed = [
        cli_run(f, root / "cache", pharmaconer_dir, f"seed={s}")
        for f, s in zip(folders, (42, 7), strict=True)
    ]
    return folders, printed


def test_a_run_without_a_terminal_logs_each_phase_and_epoch(runs):
    for printed in runs[1]:
        assert "phase fit started" in printed and "phase predict_test started" in printed
        epochs = re.findall(r"epoch (\d)/2: train loss (\d+\.\d+), dev F1 (\d\.\d+), (\d+\.\d) min", printed)
        assert [e[0] for e in epochs] == ["1", "2"], printed[-2000:]
        assert float(epochs[1][1]) < float(epochs[0][1])  # the mean training loss of each epoch, falling


class Page(HTMLParser):
    """From the browser's DOM: the body's attributes, and per document and run column its first mention
    fragments (category, side) and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.body: dict = {}
        self.docs: dict[str, dict[str, dict]] = {}
        self.hidden: dict[str, bool] = {}
        self.stack: list[tuple[str, dict]] = []

    def _inside(self, key: str) -> str | None:
        return next((attrs[key] for _, attrs in reversed(self.stack) if key in attrs), None)

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        if tag == "body":
            self.body = attrs
        if tag == "article" and "data-doc" in attrs:
            self.docs[attrs["data-doc"]] = {}
            self.hidden[attrs["data-doc"]] = "hidden" in attrs
        if tag == "div" and "col" in attrs.get("class", "").split():
            column = {"marks": [], "text": "", "hidden": "hidden" in attrs, "shown": []}
            self.docs[self._inside("data-doc")][attrs["data-run"]] = column
        classes = attrs.get("class", "").split()
        if tag == "span" and "m" in classes and "mc" not in classes and self._inside("data-doc"):
            side = next(c[2:] for c in classes if c.startswith("s-"))
            self._column()["marks"].append((attrs["data-c"], side))
            if "off" not in classes:  # not dimmed by a filter
                self._column()["shown"].append(attrs["data-c"])
        if tag not in VOID:
            self.stack.append((tag, attrs))

    def _column(self) -> dict:
        return self.docs[self._inside("data-doc")][self._inside("data-run")]

    def handle_endtag(self, tag):
        if tag not in VOID:
            self.stack.pop()

    def handle_data(self, data):
        if any("text" in a.get("class", "").split() for _, a in self.stack) and self._inside("data-doc"):
            self._column()["text"] += data


def test_the_page_of_two_real_runs_in_chromium(runs, pharmaconer_dir, tmp_path):
    chromium()  # skips here (locally) or fails (CI) without the browser
    folders, _ = runs
    page = tmp_path / "errors.html"
    assert error_page.main([*map(str, folders), "--out", str(page)]) == 0
    loaded = dump_dom(page)
    assert loaded.console == []  # no script error, no console message at all
    parsed = Page()
    parsed.feed(loaded.dom)
    assert parsed.body.get("data-selfcheck") == "ok", parsed.body
    assert "data-jserror" not in parsed.body
    recorded = [json.loads((f / "results.json").read_text())["test"] for f in folders]
    # the two runs line up: every scored document once, with one column per run
    assert sorted(parsed.docs) == sorted(recorded[0]["per_document"]) and len(parsed.docs) == DOCS
    assert all(sorted(columns) == ["0", "1"] for columns in parsed.docs.values())
    for run, test in enumerate(recorded):
        marks = Counter(m for columns in parsed.docs.values() for m in columns[str(run)]["marks"])
        sides = Counter()
        for (category, side), count in marks.items():
            if category != "ignored":
                sides[side] += count
        assert (sides["tp"], sides["fp"], sides["fn"]) == (test["tp"], test["fp"], test["fn"])
        assert marks[("exact", "tp")] == test["tp"]
        assert test["fp"] + test["fn"] > 0  # a tiny run makes errors: the categories hold something
        assert len({category for category, side in marks if side in ("fp", "fn")}) >= 2
    for doc_id, columns in parsed.docs.items():  # the marked text is the document's, unchanged
        # (an HTML parser turns CR LF into LF: the one change a browser makes to text)
        text = (pharmaconer_dir / "test" / f"{doc_id}.txt").read_bytes().decode().replace("\r\n", "\n")
        assert columns["0"]["text"] == text == columns["1"]["text"]
    # the filters, set from the address: run 1's missed mentions, then also one document searched by id
    filtered = Page()
    filtered.feed(dump_dom(page, "cat=missed&hide=2").dom)
    assert filtered.body.get("data-selfcheck") == "ok"
    assert all(columns["1"]["hidden"] and not columns["0"]["hidden"] for columns in filtered.docs.values())
    for doc_id, columns in filtered.docs.items():
        assert set(columns["0"]["shown"]) <= {"missed"}  # every other mention dimmed
        assert filtered.hidden[doc_id] == (
            "missed" not in columns["0"]["shown"]
        )  # documents without one hidden
    with_missed = [doc_id for doc_id, hidden in filtered.hidden.items() if not hidden]
    assert with_missed
    searched = Page()
    searched.feed(dump_dom(page, f"cat=missed&hide=2&doc={with_missed[-1].lower()}").dom)
    assert [doc_id for doc_id, hidden in searched.hidden.items() if not hidden] == [with_missed[-1]]
    png = screenshot(page, tmp_path / "errors.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_whole_test_set_side_by_side_opens_cleanly(tmp_path, pharmaconer_dir):
    """250 documents x 2 runs with many errors: under 5 MB, no console error, the self-check passes."""
    from test_error_page import perturbed_runs

    chromium()
    path, loaded = error_page.write_page(
        perturbed_runs(tmp_path, pharmaconer_dir), out=tmp_path / "page.html"
    )
    assert path.stat().st_size < 5 * 2**20
    opened = dump_dom(path)
    assert opened.console == []
    parsed = Page()
    parsed.feed(opened.dom)
    assert parsed.body.get("data-selfcheck") == "ok" and "data-jserror" not in parsed.body
    assert len(parsed.docs) == 250
    for index, run in enumerate(loaded):
        sides = Counter(
            s for columns in parsed.docs.values() for c, s in columns[str(index)]["marks"] if c != "ignored"
        )
        assert (sides["tp"], sides["fp"], sides["fn"]) == (run.scores.tp, run.scores.fp, run.scores.fn)
