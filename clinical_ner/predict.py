"""Tag new text with a trained run: `python -m clinical_ner.predict RUN_DIR FILES_OR_DIR --out DIR`.

Writes one BRAT `.ann` per input `.txt` (empty when nothing is found); never prints document text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from clinical_ner.console.progress import quiet_libraries
from clinical_ner.data.brat import read_text, write_predictions
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError, cli
from clinical_ner.run.record.folder import INFERENCE_FILE, MODEL_DIR, RunFolder
from clinical_ner.run.registry import stage_class
from clinical_ner.training.inference_settings import read_inference_settings, saved_approach, settings_file


def model_folder(run_dir: Path) -> Path:
    """A run folder's `model/`, or the model folder itself."""
    for candidate in (RunFolder(run_dir).model, run_dir):
        if settings_file(candidate).is_file():
            return candidate
    raise UserError(f"{run_dir}: no trained model found (expected {MODEL_DIR}/{INFERENCE_FILE})")


def input_documents(paths: list[Path]) -> list[Document]:
    """Every `.txt` named or inside a named folder, as documents without spans."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.txt"))
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not files:
        raise UserError("no .txt files to tag")
    docs = [Document(id=f.stem, text=read_text(f)) for f in files]
    seen: set[str] = set()
    for doc, file in zip(docs, files, strict=True):
        if doc.id in seen:
            raise UserError(f"{file}: another input has the same document id '{doc.id}'")
        seen.add(doc.id)
    return docs


def tag_documents(folder: Path, docs: list[Document], batch_size: int | None = None) -> dict[str, list]:
    """Predicted spans per document id, decoded exactly as the training run decoded them (either approach)."""
    stage = stage_class(saved_approach(folder))
    settings = read_inference_settings(folder, stage.settings_type)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return stage.tag(folder, tokenizer, settings, docs, batch_size)


@cli
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m clinical_ner.predict", description=__doc__.splitlines()[0]
    )
    parser.add_argument("run_dir", type=Path, help="a training run folder (or its model/ folder)")
    parser.add_argument("inputs", type=Path, nargs="+", help=".txt files or folders of .txt files")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .ann files")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_libraries()  # no weight-loading bars from transformers in a log file
    folder = model_folder(args.run_dir)
    docs = input_documents(args.inputs)
    start = time.perf_counter()
    spans = tag_documents(folder, docs, args.batch_size)
    write_predictions(args.out, {doc.id: (doc.text, spans[doc.id]) for doc in docs})
    seconds = time.perf_counter() - start
    mentions = sum(len(s) for s in spans.values())
    print(f"tagged {len(docs)} documents ({mentions} mentions) in {seconds:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
