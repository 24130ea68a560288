"""Token-length report: prompts include the text they ask about, percentiles are ordered, the CLI writes its
tables. Runs on the synthetic corpus (tokenizers trained in a temporary cache); the real corpus is optional."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clinical_ner.analysis.length_stats import coverage, length_stats, round_up
from clinical_ner.analysis.lengths import TEXTS, FamilyLengths, main, measure_family, recommendations


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[list[str], dict[str, FamilyLengths]]:
    cache = tmp_path_factory.mktemp("cache")
    overrides = ["data=synthetic", f"cache_dir={cache}"]
    return overrides, {family: measure_family(family, overrides) for family in ("llama2", "llama3")}


def assert_monotone(result: FamilyLengths) -> None:
    for kind in TEXTS:
        stats = length_stats(result.lengths[kind])
        assert stats.n > 0, kind
        assert stats.p50 <= stats.p90 <= stats.p95 <= stats.p99 <= stats.max, kind


def assert_prompts_hold_their_text(result: FamilyLengths) -> None:
    documents, prompts = result.lengths["document"], result.lengths["prompt_document"]
    # one prompt per (non-empty) document, in document order: each is longer than its document alone
    assert len(prompts) == len(documents)
    assert all(prompt > document for prompt, document in zip(prompts, documents, strict=True))
    assert length_stats(result.lengths["prompt_sentence"]).p50 > length_stats(result.lengths["sentence"]).p50
    # a document's training example is exactly its prompt plus its answer (`[]` and the end token at least)
    targets, examples = result.lengths["target_document"], result.lengths["example_document"]
    assert examples == [prompt + target for prompt, target in zip(prompts, targets, strict=True)]
    assert min(result.lengths["target_sentence"]) >= 2


def test_prompt_lengths_include_the_document(synthetic):
    _, results = synthetic
    for result in results.values():
        assert_prompts_hold_their_text(result)


def test_percentiles_are_monotone(synthetic):
    _, results = synthetic
    for result in results.values():
        assert_monotone(result)


def test_recommendations_cover_p99_and_report_configured_values(synthetic):
    _, results = synthetic
    result = results["llama3"]
    rows = recommendations(result)
    assert [r.setting for r in rows][:1] == ["approach.max_length (tokencls)"]
    assert rows[1].unit == result.configured["unit"]  # the configured seq2seq unit first
    for row in rows:
        assert row.recommended % 64 == 0 and row.lossless % 64 == 0 and row.recommended <= row.lossless
        assert 0.0 <= row.covered <= 1.0
    tokencls = rows[0]
    assert tokencls.configured == result.configured["tokencls_max_length"]
    assert coverage(result.lengths["sentence"], tokencls.recommended) >= 0.99


def test_cli_writes_tables(synthetic, tmp_path, capsys):
    overrides, _ = synthetic
    assert main([*overrides, "--out", str(tmp_path), "--families", "llama2"]) == 0
    with (tmp_path / "lengths.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["text"] for r in rows] == list(TEXTS)
    for row in rows:
        assert int(row["p50"]) <= int(row["p99"]) <= int(row["max"])
    markdown = (tmp_path / "lengths.md").read_text("utf-8")
    assert "Data: synthetic" in markdown and "## Recommended maximum lengths" in markdown
    assert (tmp_path / "lengths_recommended.csv").read_text("utf-8").startswith("family,setting,unit")
    assert "recommended" in capsys.readouterr().out


def test_cli_refuses_to_override_the_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["model=llama3", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--families" in capsys.readouterr().err


def test_length_statistics_helpers():
    stats = length_stats(list(range(1, 101)))
    assert (stats.p50, stats.p90, stats.p95, stats.p99, stats.max) == (50, 90, 95, 99, 100)
    assert stats.mean == pytest.approx(50.5)
    assert (round_up(1), round_up(64), round_up(65)) == (64, 64, 128)
    assert coverage([10, 20, 30, 40], 20) == 0.5 and coverage([], 5) == 1.0
    assert length_stats([]).n == 0


@pytest.mark.corpus
def test_pharmaconer_prompts_include_the_document(pharmaconer_dir: Path):
    result = measure_family("llama3", [f"data.root={pharmaconer_dir}"])
    assert result.configured["documents"] == 1000
    assert_prompts_hold_their_text(result)
    assert_monotone(result)
