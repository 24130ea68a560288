"""Gold round trip of each seq2seq answer format on a PharmaCoNER split: spans -> answer -> parse -> spans.

Usage: PHARMACONER_DIR=... clinical-ner format-roundtrip [--split train] [--unit sentence]
(= python -m clinical_ner.analysis.format_roundtrip)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from clinical_ner.approaches.seq2seq.formats import FORMATS
from clinical_ner.approaches.seq2seq.formats.roundtrip import round_trip
from clinical_ner.data.brat import read_split
from clinical_ner.errors import cli


@cli
def main() -> None:
    """Print, per format, the share of documents and of mentions that come back exactly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("PHARMACONER_DIR"), help="PharmaCoNER folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--unit", default="sentence", choices=["sentence", "document"])
    args = parser.parse_args()
    docs = read_split(Path(args.data) / args.split)
    types = sorted({span.type for doc in docs for span in doc.spans})
    print(f"{args.split}: {len(docs)} documents, unit={args.unit}")
    print("| format | documents exact | mentions kept |\n| --- | ---: | ---: |")
    for name, answer in FORMATS.items():
        counts = round_trip(answer, docs, types, args.unit)
        print(
            f"| {name} | {counts.exact_documents}/{counts.documents} ({counts.document_share:.2%}) "
            f"| {counts.kept_mentions}/{counts.mentions} ({counts.mention_share:.2%}) |"
        )


if __name__ == "__main__":
    main()
