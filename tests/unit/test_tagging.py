"""Spans <-> BIO tags through offset mappings: sentences, label positions, ill-formed tags, windows, corpus."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical_ner.approaches.tokencls.tagging import (
    IGNORE,
    NO_OFFSET,
    Window,
    bio_labels,
    decode_document,
    decode_tags,
    encode_document,
    tags_for_seqeval,
)
from clinical_ner.data.text import split_sentences
from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError
from clinical_ner.models.tokenizer import train_tokenizer

KINDS = ("sentencepiece_bpe", "byte_level_bpe")
POSITIONS = ("all", "first", "last")
LABELS = bio_labels(["DRUG", "PROT"])
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
ID2LABEL = dict(enumerate(LABELS))
_TRAIN = (
    "Paciente de 54 años con hipercalcemia tratada con ácido zoledrónico (Zometa®) 4 mg/iv. "
    "La analítica mostró PTH 12 pg/ml, calcio 11,2 mg/dl y fosfatasa alcalina normal. "
    "Se inició omeprazol, paracetamol 1 g/8 h y enoxaparina 40 mg/24 h. ¿Alergias? No. "
    "Inmunohistoquímica: CD20+, CD3-, Ki-67 del 80%, proteína S-100 negativa.\n"
)


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request):
    return train_tokenizer(request.param, 400, [_TRAIN] * 8)


def _doc(text: str, *mentions: tuple[str, str], doc_id: str = "d") -> Document:
    """A document whose spans are the first occurrences of each (surface, type) after the previous one."""
    spans, cursor = [], 0
    for surface, entity_type in mentions:
        start = text.index(surface, cursor)
        spans.append(Span(start, start + len(surface), entity_type))
        cursor = start + len(surface)
    return Document(doc_id, text, spans)


def _gold_as_predictions(windows: list[Window]) -> list[list[int]]:
    return [[LABEL2ID["O"] if label == IGNORE else label for label in w.labels] for w in windows]


def _round_trip(
    tokenizer, doc: Document, position: str, max_length: int = 512, stride: int = 0
) -> list[Span]:
    windows = encode_document(tokenizer, doc, LABEL2ID, position, max_length, stride)
    return decode_document(windows, _gold_as_predictions(windows), ID2LABEL, position, "begin", doc.text)


def test_bio_labels_sorted() -> None:
    assert bio_labels(["PROT", "DRUG", "PROT"]) == ["O", "B-DRUG", "I-DRUG", "B-PROT", "I-PROT"]


# ---- sentences


def test_split_sentences_basic() -> None:
    text = "  Dolor torácico. Se pauta AAS.\n\nAnalítica: Hb 12. 3 días después, alta!  ¿Fiebre? no.  "
    pieces = [text[s:e] for s, e in split_sentences(text)]
    assert pieces == [
        "Dolor torácico.",
        "Se pauta AAS.",
        "Analítica: Hb 12.",
        "3 días después, alta!",
        "¿Fiebre? no.",
    ]


def test_split_sentences_never_cuts_a_span() -> None:
    text = "Tomaba vit. D3 y Ca. Se suspendió.\nProteína\nS-100 negativa."
    spans = [Span(7, 14, "DRUG"), Span(35, 49, "PROT")]
    assert text[7:14] == "vit. D3" and text[35:49] == "Proteína\nS-100"
    pieces = [text[s:e] for s, e in split_sentences(text, spans)]
    assert pieces == ["Tomaba vit. D3 y Ca.", "Se suspendió.", "Proteína\nS-100 negativa."]
    # At inference (no spans) the same text is cut at every boundary.
    assert len(split_sentences(text)) == 5


_piece = st.sampled_from(
    ["ácido", "PTH", "12", "mg", ".", ",", "(", ")", " ", "  ", "\n", ". ", "! ", "Se", "¿Qué"]
)


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(_piece, min_size=1, max_size=40), data=st.data())
def test_split_sentences_property(pieces: list[str], data) -> None:
    text = "".join(pieces)
    solid = [i for i, ch in enumerate(text) if not ch.isspace()]
    spans: list[Span] = []
    if len(solid) >= 2:
        cuts = sorted(set(data.draw(st.lists(st.sampled_from(solid), max_size=8))))
        # Pair up consecutive non-space positions into disjoint spans with non-space edges.
        for a, b in zip(cuts[::2], cuts[1::2], strict=False):
            spans.append(Span(a, b + 1, "DRUG"))
    ranges = split_sentences(text, spans)
    for (_, end), (start, _) in pairwise(ranges):
        assert end <= start
    for s, e in ranges:
        assert s < e and not text[s].isspace() and not text[e - 1].isspace()
    for span in spans:
        assert any(s <= span.start and span.end <= e for s, e in ranges), (text, span, ranges)
    covered = {i for s, e in ranges for i in range(s, e)}
    assert all(i in covered for i in solid)


# ---- label positions


def test_label_position_all(tokenizer) -> None:
    doc = _doc("Se pauta ácido zoledrónico hoy.", ("ácido zoledrónico", "DRUG"))
    (window,) = encode_document(tokenizer, doc, LABEL2ID, "all", 64, 0)
    assert window.input_ids[0] == tokenizer.bos_token_id and window.offsets[0] == NO_OFFSET
    assert window.labels[0] == IGNORE and window.input_ids.count(tokenizer.bos_token_id) == 1
    inside = [i for i, (s, e) in enumerate(window.offsets) if s < e and s >= 9 and e <= 26]
    assert [ID2LABEL[window.labels[i]] for i in inside] == ["B-DRUG"] + ["I-DRUG"] * (len(inside) - 1)
    for i, (s, e) in enumerate(window.offsets[1:], start=1):
        if s == e:  # whitespace-only sub-token
            assert window.labels[i] == IGNORE
        elif e <= 9 or s >= 26:
            assert ID2LABEL[window.labels[i]] == "O"


@pytest.mark.parametrize("position", ["first", "last"])
def test_label_position_first_last(tokenizer, position: str) -> None:
    text = "Se pauta zoledrónico e hidroclorotiazida."
    doc = _doc(text, ("zoledrónico", "DRUG"), ("hidroclorotiazida", "DRUG"))
    (window,) = encode_document(tokenizer, doc, LABEL2ID, position, 64, 0)
    words = list(re.finditer(r"\w+|[^\w\s]", text))
    labelled = [i for i, label in enumerate(window.labels) if label != IGNORE]
    assert len(labelled) == len(words)
    for word, i in zip(words, labelled, strict=True):
        tokens = [j for j, (s, e) in enumerate(window.offsets) if s < word.end() and e > word.start()]
        assert i == (tokens[0] if position == "first" else tokens[-1])
    tags = [ID2LABEL[window.labels[i]] for i in labelled]
    assert tags == ["O", "O", "B-DRUG", "O", "B-DRUG", "O"]


def test_shared_sub_token_labels_both_words() -> None:
    # "(PSA" as one sub-token (Llama 3's pre-split): the span must not start at "(".
    text = "Valor (PSA) alto"
    offsets = [(0, 5), (6, 10), (10, 11), (12, 16)]
    for position in POSITIONS:
        tags = [0, LABEL2ID["B-PROT"], 0, 0]
        assert decode_tags(offsets, tags, ID2LABEL, position, "begin", text) == [Span(7, 10, "PROT")]


# ---- ill-formed tags

# Four words "aa bb cc dd": one offset each.
_TEXT = "aa bb cc dd"
_OFFSETS = [(0, 2), (3, 5), (6, 8), (9, 11)]


def _decode(tags: list[str], rule: str, position: str = "all") -> list[tuple[str, str]]:
    ids = [LABEL2ID[tag] for tag in tags]
    return [
        (s.type, _TEXT[s.start : s.end]) for s in decode_tags(_OFFSETS, ids, ID2LABEL, position, rule, _TEXT)
    ]


@pytest.mark.parametrize(
    ("tags", "begin", "drop"),
    [
        (["B-DRUG", "I-DRUG", "O", "O"], [("DRUG", "aa bb")], [("DRUG", "aa bb")]),
        (["B-DRUG", "B-DRUG", "O", "O"], [("DRUG", "aa"), ("DRUG", "bb")], [("DRUG", "aa"), ("DRUG", "bb")]),
        (["I-DRUG", "I-DRUG", "O", "O"], [("DRUG", "aa bb")], []),  # stray I at the start
        (["O", "I-DRUG", "O", "O"], [("DRUG", "bb")], []),  # stray I after O
        (["B-DRUG", "O", "I-DRUG", "O"], [("DRUG", "aa"), ("DRUG", "cc")], [("DRUG", "aa")]),
        (["B-DRUG", "I-PROT", "O", "O"], [("DRUG", "aa"), ("PROT", "bb")], [("DRUG", "aa")]),  # type switch
        (["B-DRUG", "I-PROT", "I-PROT", "O"], [("DRUG", "aa"), ("PROT", "bb cc")], [("DRUG", "aa")]),
        (
            ["B-DRUG", "I-PROT", "I-DRUG", "O"],
            [("DRUG", "aa"), ("PROT", "bb"), ("DRUG", "cc")],
            [("DRUG", "aa")],
        ),
        (
            ["B-DRUG", "I-DRUG", "I-PROT", "I-DRUG"],
            [("DRUG", "aa bb"), ("PROT", "cc"), ("DRUG", "dd")],
            [("DRUG", "aa bb")],
        ),
        (
            ["B-DRUG", "I-PROT", "B-PROT", "I-PROT"],
            [("DRUG", "aa"), ("PROT", "bb"), ("PROT", "cc dd")],
            [("DRUG", "aa"), ("PROT", "cc dd")],
        ),
        (["O", "O", "O", "I-PROT"], [("PROT", "dd")], []),  # stray I at the end
    ],
)
@pytest.mark.parametrize("position", POSITIONS)
def test_ill_formed_rules(tags: list[str], begin: list, drop: list, position: str) -> None:
    assert _decode(tags, "begin", position) == sorted(begin, key=lambda t: _TEXT.index(t[1]))
    assert _decode(tags, "drop", position) == sorted(drop, key=lambda t: _TEXT.index(t[1]))


def test_ignored_positions_are_transparent() -> None:
    text = "aa  bb"
    offsets = [NO_OFFSET, (0, 2), (4, 4), (4, 6)]  # BOS, word, whitespace-only sub-token, word
    ids = [0, LABEL2ID["B-DRUG"], LABEL2ID["O"], LABEL2ID["I-DRUG"]]
    assert decode_tags(offsets, ids, ID2LABEL, "all", "drop", text) == [Span(0, 6, "DRUG")]


def test_unknown_rule_and_position() -> None:
    with pytest.raises(UserError, match="ill-formed"):
        decode_tags(_OFFSETS, [0] * 4, ID2LABEL, "all", "keep", _TEXT)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="label position"):
        decode_tags(_OFFSETS, [0] * 4, ID2LABEL, "middle", "begin", _TEXT)  # type: ignore[arg-type]


# ---- windows and exact offsets

_LONG = " ".join(
    f"Dosis {i}: omeprazol {i} mg, ácido   zoledrónico y PTH-{i} ({i}%), fosfatasa alcalina"
    for i in range(12)
)


def _long_doc() -> Document:
    mentions = []
    for _ in range(12):
        mentions += [
            ("omeprazol", "DRUG"),
            ("ácido   zoledrónico", "DRUG"),
            ("PTH", "PROT"),
            ("fosfatasa alcalina", "PROT"),
        ]
    return _doc(_LONG + ".", *mentions)


@pytest.mark.parametrize(("max_length", "stride"), [(16, 4), (32, 8), (33, 0), (40, 30)])
@pytest.mark.parametrize("position", POSITIONS)
def test_windows_own_every_token_once(tokenizer, max_length: int, stride: int, position: str) -> None:
    doc = _long_doc()
    windows = encode_document(tokenizer, doc, LABEL2ID, position, max_length, stride)
    (single,) = encode_document(tokenizer, doc, LABEL2ID, position, 10_000, 0)
    assert len(windows) > 2
    owned = []
    for window in windows:
        assert len(window.input_ids) <= max_length
        assert window.input_ids[0] == tokenizer.bos_token_id and window.labels[0] == IGNORE
        assert 1 <= window.score_from < window.score_to <= len(window.input_ids)
        owned += [window.token_start + i - 1 for i in range(window.score_from, window.score_to)]
        # Labels at window edges are the sentence's gold labels, not re-derived per window.
        span = slice(window.token_start + 1, window.token_start + len(window.input_ids))
        assert window.labels[1:] == single.labels[span]
        assert window.offsets[1:] == single.offsets[span]
    assert owned == list(range(len(single.input_ids) - 1))
    # Ownership changes hands mid-overlap, so an owned token keeps about stride/2 tokens of context each side.
    for before, after in pairwise(windows):
        assert after.score_from - 1 == stride // 2
        assert len(before.input_ids) - before.score_to == stride - stride // 2
    assert _round_trip(tokenizer, doc, position, max_length, stride) == doc.spans


def test_windows_bad_stride(tokenizer) -> None:
    with pytest.raises(UserError, match="stride"):
        encode_document(tokenizer, _long_doc(), LABEL2ID, "all", 16, 15)


@pytest.mark.parametrize("position", POSITIONS)
def test_decode_exact_offsets_with_accents_spaces_newlines(tokenizer, position: str) -> None:
    text = (
        "  Paciente  con\n\nhipercalcemia   tratada con ácido   zoledrónico (Zometa®).\n"
        "Se añadió  α-interferón\ty 龍 al 0,5%.  Control de PTH.\n\n"
    )
    doc = _doc(
        text,
        ("ácido   zoledrónico", "DRUG"),
        ("Zometa", "DRUG"),
        ("α-interferón", "PROT"),
        ("龍", "DRUG"),
        ("PTH", "PROT"),
    )
    assert _round_trip(tokenizer, doc, position) == doc.spans
    assert _round_trip(tokenizer, doc, position, max_length=6, stride=2) == doc.spans


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_property(tokenizer, data) -> None:
    words = data.draw(
        st.lists(
            st.sampled_from(["ácido", "PTH", "12", "mg", "Zometa", "α", "CD20", "de"]),
            min_size=1,
            max_size=30,
        )
    )
    seps = data.draw(
        st.lists(
            st.sampled_from([" ", "  ", ", ", " (", ") ", ".\n", ". "]),
            min_size=len(words),
            max_size=len(words),
        )
    )
    text, bounds = "", []
    for word, sep in zip(words, seps, strict=True):
        bounds.append((len(text), len(text) + len(word)))
        text += word + sep
    chosen = sorted(set(data.draw(st.lists(st.integers(0, len(words) - 1), max_size=6))))
    spans = [Span(*bounds[i], data.draw(st.sampled_from(["DRUG", "PROT"]))) for i in chosen]
    doc = Document("p", text, spans)
    for position in POSITIONS:
        assert _round_trip(tokenizer, doc, position, max_length=8, stride=3) == spans


def test_inference_encoding_without_spans(tokenizer) -> None:
    doc = _long_doc()
    bare = Document(doc.id, doc.text, [])
    for position in POSITIONS:
        gold = encode_document(tokenizer, doc, LABEL2ID, position, 32, 8)
        plain = encode_document(tokenizer, bare, LABEL2ID, position, 32, 8)
        assert [w.input_ids for w in gold] == [w.input_ids for w in plain]
        for g, p in zip(gold, plain, strict=True):
            assert [label != IGNORE for label in g.labels] == [label != IGNORE for label in p.labels]
            assert {label for label in p.labels if label != IGNORE} <= {LABEL2ID["O"]}


def test_tags_for_seqeval(tokenizer) -> None:
    doc = _long_doc()
    windows = encode_document(tokenizer, doc, LABEL2ID, "all", 32, 8)
    predictions = _gold_as_predictions(windows)
    gold, predicted = tags_for_seqeval(windows, predictions, ID2LABEL)
    assert gold == predicted and len(gold) == len(windows)
    flat = [tag for row in gold for tag in row]
    assert flat.count("B-DRUG") == 24 and flat.count("B-PROT") == 24


# ---- real corpus


@pytest.mark.corpus
@pytest.mark.parametrize("kind", KINDS)
def test_corpus_round_trip_dev(pharmaconer_dir, kind: str) -> None:
    from clinical_ner.data.brat import read_split

    train, dev = read_split(pharmaconer_dir / "train"), read_split(pharmaconer_dir / "dev")
    tok = train_tokenizer(kind, 2000, [d.text for d in train + dev])
    label2id = {label: i for i, label in enumerate(bio_labels([s.type for d in train for s in d.spans]))}
    id2label = {i: label for label, i in label2id.items()}
    kept = total = 0
    for doc in dev:
        windows = encode_document(tok, doc, label2id, "all", 128, 32)
        predictions = [[label2id["O"] if label == IGNORE else label for label in w.labels] for w in windows]
        decoded = set(decode_document(windows, predictions, id2label, "all", "begin", doc.text))
        kept += len(decoded & set(doc.spans))
        total += len(doc.spans)
    assert total == 1926
    assert kept / total >= 0.99
