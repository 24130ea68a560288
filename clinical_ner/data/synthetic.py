"""A small synthetic Spanish clinical BRAT corpus, so tests and the offline demo need no external data.

Its entity types (FARMACO, DOSIS, SINTOMA) are deliberately not PharmaCoNER's. Mentions come from closed word
lists in fixed sentence templates, so a tiny model learns them in a few hundred steps. Everything is
determined by the seed.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from clinical_ner.data.brat import write_ann
from clinical_ner.data.types import Document, Span
from clinical_ner.errors import UserError, cli
from clinical_ner.files.atomic import atomic_write_text

SPLITS = ("train", "dev", "test")
ENTITY_TYPES = ("FARMACO", "DOSIS", "SINTOMA")
# Template slot -> entity type; other slots ({A}ge, {N} days, {H}ours, {C}ity) are plain text.
_SLOT_TYPES = {"F": "FARMACO", "D": "DOSIS", "S": "SINTOMA"}
_SLOT = re.compile(r"\{([A-Z])\}")
NO_ENTITY_DOC_RATE = 0.15

DRUGS = (
    "paracetamol",
    "ibuprofeno",
    "amoxicilina",
    "ácido acetilsalicílico",
    "omeprazol",
    "metformina",
    "enalapril",
    "atorvastatina",
    "furosemida",
    "prednisona",
    "ciprofloxacino",
    "vancomicina",
    "heparina sódica",
    "insulina glargina",
    "levotiroxina",
    "tramadol",
    "amoxicilina-ácido clavulánico",
    "cloruro potásico",
    "sulfato ferroso",
    "metamizol",
)
DOSE_AMOUNTS = (
    "1",
    "2",
    "5",
    "10",
    "20",
    "25",
    "40",
    "50",
    "100",
    "250",
    "500",
    "875",
    "0,5",
    "2,5",
    "1.000",
)
DOSE_UNITS = ("mg", "g", "mcg", "ml", "UI", "mg/kg", "mg/día")
SYMPTOMS = (
    "fiebre",
    "dolor abdominal",
    "cefalea",
    "náuseas",
    "vómitos",
    "disnea",
    "tos seca",
    "dolor torácico",
    "astenia",
    "pérdida de peso",
    "mareo",
    "erupción cutánea",
    "diarrea",
    "edema en miembros inferiores",
    "prurito",
)
CITIES = ("Madrid", "Sevilla", "Málaga", "León", "Cádiz", "Logroño", "Córdoba")

ENTITY_TEMPLATES = (
    "Se inició tratamiento con {F} {D} cada {H} horas.",
    "Se pautó {F} a dosis de {D} al día.",
    "El paciente refería {S} de {N} días de evolución.",
    "Acudió a urgencias por {S} y {S}.",
    "Tras la administración de {F} presentó {S}.",
    "Recibía {F} {D} y {F} {D} como tratamiento habitual.",
    "{F} fue suspendido por {S}.",
    "Se añadió {F} ({D} por vía oral).",
    "Presentaba {S}, por lo que se administró {F}.",
    "Niega {S} en los últimos {N} días.",
    "Al alta se prescribió {F} {D} cada {H} horas durante {N} días.",
)
NEUTRAL_TEMPLATES = (
    "Varón de {A} años sin antecedentes de interés.",
    "Mujer de {A} años, natural de {C}.",
    "La exploración física fue normal.",
    "Se realizó una ecografía abdominal sin hallazgos relevantes.",
    "La analítica de control mostró valores dentro de la normalidad.",
    "Fue dado de alta a los {N} días con seguimiento en consultas externas.",
    "Se solicitó una radiografía de tórax.",
    "No refiere alergias medicamentosas conocidas.",
    "La evolución posterior fue favorable.",
)


def _fill(slot: str, rng: random.Random) -> str:
    """Surface text for one template slot."""
    if slot == "F":
        return rng.choice(DRUGS)
    if slot == "D":
        return f"{rng.choice(DOSE_AMOUNTS)} {rng.choice(DOSE_UNITS)}"
    if slot == "S":
        return rng.choice(SYMPTOMS)
    if slot == "A":
        return str(rng.randint(18, 95))
    if slot == "N":
        return str(rng.randint(2, 30))
    if slot == "H":
        return rng.choice(("6", "8", "12", "24"))
    if slot == "C":
        return rng.choice(CITIES)
    raise ValueError(f"unknown template slot {{{slot}}}")


def _render(template: str, offset: int, rng: random.Random) -> tuple[str, list[Span]]:
    """Fill a template whose text will start at `offset`; return the sentence and its spans (document offsets)."""
    pieces: list[str] = []
    spans: list[Span] = []
    length = 0
    for index, part in enumerate(_SLOT.split(template)):
        # re.split alternates literal text (even index) and captured slot names (odd index).
        text = part if index % 2 == 0 else _fill(part, rng)
        if length == 0 and text:
            # A sentence-initial mention is capitalised, as in real text; its span covers the capital too.
            text = text[0].upper() + text[1:]
        if index % 2 == 1 and part in _SLOT_TYPES:
            spans.append(Span(offset + length, offset + length + len(text), _SLOT_TYPES[part]))
        pieces.append(text)
        length += len(text)
    return "".join(pieces), spans


def make_document(doc_id: str, rng: random.Random) -> Document:
    """One synthetic clinical case of 3-7 sentences; about NO_ENTITY_DOC_RATE of them mention nothing."""
    no_entities = rng.random() < NO_ENTITY_DOC_RATE
    text = ""
    spans: list[Span] = []
    for position in range(rng.randint(3, 7)):
        if position > 0:
            text += "\n" if rng.random() < 0.2 else " "
        # Cases usually open with the patient's presentation, as real ones do.
        neutral = no_entities or position == 0 or rng.random() < 0.35
        template = rng.choice(NEUTRAL_TEMPLATES if neutral else ENTITY_TEMPLATES)
        sentence, sentence_spans = _render(template, len(text), rng)
        text += sentence
        spans.extend(sentence_spans)
    return Document(id=doc_id, text=text + "\n", spans=spans)


def synthetic_splits(
    n_train: int = 60, n_dev: int = 20, n_test: int = 20, seed: int = 0
) -> dict[str, list[Document]]:
    """The synthetic corpus in memory: split name -> documents with ids `synth-<split>-<nnnn>`."""
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    if any(size < 0 for size in sizes.values()):
        raise UserError(f"synthetic split sizes must be >= 0, got {sizes}")
    rng = random.Random(seed)
    return {
        split: [make_document(f"synth-{split}-{i:04d}", rng) for i in range(sizes[split])] for split in SPLITS
    }


def generate_synthetic_corpus(
    out_dir: Path, n_train: int = 60, n_dev: int = 20, n_test: int = 20, seed: int = 0
) -> Path:
    """Write the synthetic corpus as BRAT `out_dir/{train,dev,test}/<id>.txt + <id>.ann`; return `out_dir`.

    Each file is written atomically; stale .txt/.ann files from an earlier, larger run are removed.
    """
    out_dir = Path(out_dir)
    for split, docs in synthetic_splits(n_train, n_dev, n_test, seed).items():
        folder = out_dir / split
        folder.mkdir(parents=True, exist_ok=True)
        for doc in docs:
            atomic_write_text(folder / f"{doc.id}.txt", doc.text)
            write_ann(folder / f"{doc.id}.ann", doc.text, doc.spans)
        keep = {f"{doc.id}{ext}" for doc in docs for ext in (".txt", ".ann")}
        for path in folder.iterdir():
            if path.suffix in (".txt", ".ann") and path.name not in keep:
                path.unlink()
    return out_dir


@cli
def main(argv: list[str] | None = None) -> None:
    """Write the synthetic corpus to --out."""
    parser = argparse.ArgumentParser(
        prog="python -m clinical_ner.data.synthetic",
        description="Write a small synthetic Spanish clinical BRAT corpus (types FARMACO, DOSIS, SINTOMA).",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write train/ dev/ test/ into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--n-dev", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=20)
    args = parser.parse_args(argv)
    out = generate_synthetic_corpus(args.out, args.n_train, args.n_dev, args.n_test, args.seed)
    print(f"synthetic corpus written to {out}")


if __name__ == "__main__":
    main()
