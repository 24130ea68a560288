"""Token-classification inference never reads gold: dev/test windows (the model's only input) are the same
whatever the documents' annotations, while training still never cuts a sentence inside a gold mention."""

from __future__ import annotations

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.tagging import bio_labels
from clinical_ner.data.batching import Batching
from clinical_ner.data.types import Document, Span
from clinical_ner.models.tokenizer import train_tokenizer

# "Tab. Fólico" crosses the sentence boundary after "Tab." (". " then an uppercase letter)
TEXT = "Se le pautó Tab. Fólico 5 mg al día. Después omeprazol 20 mg.\nControl en un mes."
LABEL2ID = {label: i for i, label in enumerate(bio_labels(["DRUG"]))}


def _span(surface: str) -> Span:
    start = TEXT.index(surface)
    return Span(start, start + len(surface), "DRUG")


def _module(spans: list[Span]) -> TokenClsDataModule:
    doc = Document("d", TEXT, spans)
    tokenizer = train_tokenizer("byte_level_bpe", 300, [TEXT] * 4)
    splits = {"train": [doc], "dev": [doc], "test": [doc]}
    return TokenClsDataModule(splits, tokenizer, LABEL2ID, Windowing("last", 16, 4), Batching(2, 2, seed=0))


def _inputs(module: TokenClsDataModule, split: str) -> list[tuple]:
    return [
        (w.doc_id, w.sentence, w.token_start, w.input_ids, w.offsets, w.score_from, w.score_to)
        for w in module.encoded[split].windows
    ]


def test_dev_and_test_windows_do_not_depend_on_gold() -> None:
    crossing = _module([_span("Tab. Fólico"), _span("omeprazol")])
    other = _module([_span("omeprazol")])
    bare = _module([])
    for split in ("dev", "test"):
        assert _inputs(crossing, split) == _inputs(other, split) == _inputs(bare, split)
    # the cut after "Tab." is kept at inference: four sentences, not three
    assert len({w.sentence for w in crossing.encoded["test"].windows}) == 4


def test_training_still_keeps_gold_mentions_whole() -> None:
    crossing = _module([_span("Tab. Fólico"), _span("omeprazol")])
    bare = _module([])
    assert len({w.sentence for w in crossing.encoded["train"].windows}) == 3
    assert len({w.sentence for w in bare.encoded["train"].windows}) == 4
