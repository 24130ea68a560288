"""The error page without a browser: categories add up to the scorer's TP/FP/FN, marks nest and escape, the
command writes one self-contained file and refuses mistakes with one line."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from clinical_ner.analysis import error_page, error_pairs
from clinical_ner.analysis.error_marks import marked_html
from clinical_ner.data.brat import write_ann
from clinical_ner.data.types import Span
from clinical_ner.metrics.error_categories import (
    BOUNDARY,
    EXACT,
    MISSED,
    OVERLAP_WRONG_TYPE,
    SPURIOUS,
    WRONG_TYPE,
    category_counts,
    classify,
    classify_document,
    totals,
)
from clinical_ner.metrics.span_scorer import score_sets

TYPES = ["NORMALIZABLES", "PROTEINAS", "NO_NORMALIZABLES", "UNCLEAR"]


def random_documents(seed: int, docs: int = 40) -> tuple[dict, dict]:
    """Gold and system triples with many overlaps, shared spans, wrong types and UNCLEAR on both sides."""
    rng = random.Random(seed)
    gold, system = {}, {}
    for index in range(docs):
        g = set()
        for _ in range(rng.randint(0, 8)):
            start = rng.randint(0, 60)
            g.add((rng.choice(TYPES), start, start + rng.randint(1, 12)))
        s = set()
        for label, start, end in g:
            roll = rng.random()
            if roll < 0.4:
                s.add((label, start, end))
            elif roll < 0.55:
                s.add((rng.choice(TYPES), start, end))
            elif roll < 0.75:
                s.add((rng.choice(TYPES), max(0, start + rng.randint(-3, 3)), end + rng.randint(-3, 3) + 4))
        for _ in range(rng.randint(0, 3)):
            start = rng.randint(0, 60)
            s.add((rng.choice(TYPES), start, start + rng.randint(1, 10)))
        gold[f"doc{index}"], system[f"doc{index}"] = g, s
    system["extra"] = {("PROTEINAS", 0, 3)}  # a system file with no gold: not scored
    return gold, system


@pytest.mark.parametrize("rule", ["codalab", "standalone"])
@pytest.mark.parametrize("seed", range(5))
def test_categories_sum_to_the_scorers_counts(rule, seed):
    gold, system = random_documents(seed)
    scores = score_sets(gold, system, rule)
    outcomes = classify(gold, system, rule)
    sums = totals(category_counts(outcomes))
    assert (sums["tp"], sums["fp"], sums["fn"]) == (scores.tp, scores.fp, scores.fn)
    assert scores.fp and scores.fn  # the random documents do hold errors
    for doc_id, mentions in outcomes.items():  # per document too
        counted = [o for o in mentions if o.category != "ignored"]
        per_side = [sum(o.side == side for o in counted) for side in ("tp", "fp", "fn")]
        assert per_side == scores.per_document[doc_id]
    assert "extra" not in outcomes


def test_each_category_on_a_small_document():
    gold = {
        ("NORMALIZABLES", 0, 5),  # predicted exactly
        ("PROTEINAS", 10, 15),  # predicted as NORMALIZABLES: wrong type
        ("NORMALIZABLES", 20, 30),  # predicted 22-30: boundary
        ("PROTEINAS", 40, 50),  # predicted NORMALIZABLES 45-55: overlap, wrong type
        ("NORMALIZABLES", 60, 65),  # nothing predicted: missed
        ("UNCLEAR", 70, 75),  # dropped by the codalab rule
    }
    system = {
        ("NORMALIZABLES", 0, 5),
        ("NORMALIZABLES", 10, 15),
        ("NORMALIZABLES", 22, 30),
        ("NORMALIZABLES", 45, 55),
        ("PROTEINAS", 80, 85),  # spurious
        ("UNCLEAR", 90, 95),  # dropped by the codalab rule
    }
    found = {(o.side, o.start, o.category, o.partner) for o in classify_document(gold, system)}
    assert found == {
        ("tp", 0, EXACT, None),
        ("fp", 10, WRONG_TYPE, ("PROTEINAS", 10, 15)),
        ("fn", 10, WRONG_TYPE, ("NORMALIZABLES", 10, 15)),
        ("fp", 22, BOUNDARY, ("NORMALIZABLES", 20, 30)),
        ("fn", 20, BOUNDARY, ("NORMALIZABLES", 22, 30)),
        ("fp", 45, OVERLAP_WRONG_TYPE, ("PROTEINAS", 40, 50)),
        ("fn", 40, OVERLAP_WRONG_TYPE, ("NORMALIZABLES", 45, 55)),
        ("fn", 60, MISSED, None),
        ("fp", 80, SPURIOUS, None),
        ("fn", 70, "ignored", None),
        ("fp", 90, "ignored", None),
    }
    # the standalone rule scores UNCLEAR: the two become a miss and a spurious mention
    standalone = {(o.start, o.category) for o in classify_document(gold, system, "standalone")}
    assert (70, MISSED) in standalone and (90, SPURIOUS) in standalone


def test_marks_nest_split_where_they_cross_and_escape():
    from clinical_ner.metrics.error_categories import Outcome

    text = '<b>Dosis & 5 mg</b> de "ácido" fólico'
    outcomes = [
        Outcome("NORMALIZABLES", 3, 9, "fp", SPURIOUS),  # "Dosis "
        Outcome("PROTEINAS", 0, 15, "fn", MISSED),  # contains the first one
        Outcome("NORMALIZABLES", 12, 30, "fn", BOUNDARY),  # crosses the outer one's end
        Outcome("PROTEINAS", 5, 5, "fp", SPURIOUS),  # empty: still on the page
    ]
    html = marked_html(text, outcomes)
    assert "<b>" not in html and "&lt;b&gt;" in html and "&amp;" in html and "&quot;" in html
    assert html.count('class="m ') == 5  # four mentions, one split in two where it crosses another
    assert len(re.findall(r'class="m [^"]*\bmc\b', html)) == 1
    starts = [m.group(0) for m in re.finditer(r"<span[^>]*>", html)]
    assert sum("mc" not in s for s in starts) == 4
    # the text, unmarked, is the document's
    from html import unescape

    assert unescape(re.sub(r"</?span[^>]*>", "", html)) == text


def write_run(
    folder: Path, gold_dir: Path, predictions: dict[str, list[Span]], split: str = "test", **coordinates
) -> Path:
    """A run folder as training leaves it: results.json and predictions/<split>/<id>.ann."""
    (folder / "predictions" / split).mkdir(parents=True)
    for doc_id, spans in predictions.items():
        text = (gold_dir / f"{doc_id}.txt").read_text(encoding="utf-8")
        write_ann(folder / "predictions" / split / f"{doc_id}.ann", text, spans)
    record = {
        "status": "complete",
        **{
            "approach": "tokencls",
            "model": "llama2",
            "corpus": "none",
            "scale": "tiny",
            "seed": 42,
            **coordinates,
        },
        "config": {"data": {"name": "pharmaconer", "root": str(gold_dir.parent)}},
        split: {"rule": "codalab", "precision": 0.5, "recall": 0.5, "f1": 0.5},
    }
    (folder / "results.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A two-document test split whose text needs escaping."""
    test = tmp_path / "corpus" / "test"
    test.mkdir(parents=True)
    (test / "a.txt").write_text(
        "Dosis <script>alert(1)</script> de ácido fólico & hierro.\n", encoding="utf-8"
    )
    write_ann(
        test / "a.ann",
        (test / "a.txt").read_text(),
        [Span(39, 44, "NORMALIZABLES"), Span(47, 53, "NORMALIZABLES")],
    )
    (test / "b.txt").write_text("Proteína C reactiva elevada.", encoding="utf-8")
    write_ann(test / "b.ann", (test / "b.txt").read_text(), [Span(0, 19, "PROTEINAS")])
    for split in ("train", "dev"):
        (tmp_path / "corpus" / split).mkdir()
    return test


def test_the_command_writes_one_escaped_page_for_two_runs(tmp_path, corpus, capsys):
    run_a = write_run(
        tmp_path / "a",
        corpus,
        {"a": [Span(39, 44, "NORMALIZABLES"), Span(0, 5, "PROTEINAS")], "b": [Span(0, 8, "PROTEINAS")]},
    )
    run_b = write_run(tmp_path / "b", corpus, {"a": [Span(47, 53, "PROTEINAS")]})  # b.ann missing: not scored
    out = tmp_path / "page.html"
    assert error_page.main([str(run_a), str(run_b), "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing fetched from anywhere
    assert out.stat().st_mode & 0o077 == 0  # clinical text: the owner's only
    assert html.count('<article class="doc"') == 2  # every document any run scored, once
    assert "no prediction file for this document" in html
    printed = capsys.readouterr().out
    assert "TP 1 FP 2 FN 2" in printed and "TP 0 FP 1 FN 2" in printed


def test_the_page_goes_beside_the_run_by_default(tmp_path, corpus):
    run = write_run(tmp_path / "a", corpus, {"a": [], "b": []})
    assert error_page.main([str(run), "--gold", str(corpus)]) == 0
    assert (run / "errors-test.html").is_file()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp, corpus: tmp / "nowhere", "results.json: not found"),
        (
            lambda tmp, corpus: write_run(tmp / "r", corpus, {"a": []}, split="dev"),
            "no predictions for split 'test'",
        ),
    ],
)
def test_mistakes_end_with_one_line(tmp_path, corpus, capsys, make, message):
    folder = make(tmp_path, corpus)
    with pytest.raises(SystemExit) as exit_info:
        error_page.main([str(folder), "--out", str(tmp_path / "page.html")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "page.html").exists()


def test_one_page_per_cell_that_two_approaches_completed(tmp_path, corpus, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "seq2seq" / "llama2", corpus, {"a": [], "b": []}, approach="seq2seq")
    write_run(sweep / "tokencls" / "llama2", corpus, {"a": [], "b": [Span(0, 19, "PROTEINAS")]})
    write_run(sweep / "tokencls" / "llama3", corpus, {"a": [], "b": []}, model="llama3")  # no pair
    assert error_pairs.main([str(sweep)]) == 0
    (page,) = (sweep / "errors").glob("*.html")
    assert page.name == "errors-llama2-none-tiny-s42.html"
    html = page.read_text(encoding="utf-8")
    assert html.index("run 1: tokencls/llama2") < html.index("run 2: seq2seq/llama2")  # token cls first
    printed = capsys.readouterr().out
    assert "TP 1 FP 0 FN 2" in printed and "TP 0 FP 0 FN 3" in printed


def perturbed_runs(root: Path, corpus: Path, runs: int = 2) -> list[Path]:
    """Runs whose test predictions are the gold mentions of all documents with many errors of every kind (half
    of the mentions changed, plus spurious ones): a page at least as large as a weak real run's."""
    from clinical_ner.data.brat import read_split

    docs = read_split(corpus / "test")
    types = sorted({s.type for d in docs for s in d.spans} - {"UNCLEAR"})
    folders = []
    for index in range(runs):
        rng = random.Random(index)
        predictions = {}
        for doc in docs:
            spans = []
            for span in doc.spans:
                roll = rng.random()
                if roll < 0.5:
                    spans.append(span)
                elif roll < 0.65:
                    spans.append(Span(span.start, span.end, rng.choice(types)))
                elif roll < 0.8 and span.end - span.start > 2:
                    spans.append(Span(span.start + 1, span.end, span.type))
            for _ in range(3):
                start = rng.randrange(len(doc.text) - 8)
                if "\n" not in doc.text[start : start + 8]:
                    spans.append(Span(start, start + 8, rng.choice(types)))
            predictions[doc.id] = spans
        folders.append(write_run(root / f"run{index}", corpus / "test", predictions, seed=index))
    return folders


def test_a_two_run_page_of_the_whole_test_set_stays_under_5_mb(tmp_path, pharmaconer_dir):
    runs = perturbed_runs(tmp_path, pharmaconer_dir)
    path, loaded = error_page.write_page(runs, out=tmp_path / "page.html")
    assert all(run.scores.documents == 250 and run.scores.fp > 1000 for run in loaded)
    assert path.stat().st_size < 5 * 2**20, path.stat().st_size
