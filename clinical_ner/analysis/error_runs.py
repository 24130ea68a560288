"""What the error page reads: run folders (results.json + predictions/<split>/*.ann) and the gold documents of the
split, each run classified into error categories and scored with the scorer the run used.

Gold comes from `--gold DIR` (a folder of `<id>.txt` + `<id>.ann`), else from the first run's data config (the
same corpus loader as training: `data.root`, $PHARMACONER_DIR or the cache; the built-in synthetic corpus), so the
page scores exactly what `results.json` scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from clinical_ner.cache.location import cache_dir
from clinical_ner.config import DataConfig
from clinical_ner.data.brat import read_split
from clinical_ner.data.pharmaconer import SPLITS, locate_corpus
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.data.types import Document
from clinical_ner.errors import UserError
from clinical_ner.metrics.error_categories import Outcome, category_counts, classify
from clinical_ner.metrics.span_scorer import Scores, Triple, read_ann_dir, score_sets
from clinical_ner.run.record.folder import RunFolder


@dataclass
class RunErrors:
    """One run on one split: its label, scores (recomputed, as the run scored them) and categorised mentions."""

    folder: Path
    label: str
    scores: Scores
    outcomes: dict[str, list[Outcome]]  # doc id -> mentions (scored documents only)
    recorded: dict = field(default_factory=dict)  # the split's section of results.json, as the run wrote it

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """{category: {side: count}} over the run's scored documents."""
        return category_counts(self.outcomes)


def read_results(folder: Path) -> dict:
    """A run folder's results.json (a UserError naming the file when it is missing, unreadable or failed)."""
    path = RunFolder(folder).results
    if not path.is_file():
        raise UserError(f"{path}: not found; is {folder} a run folder?")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read it as JSON ({err})") from None
    if not isinstance(results, dict):
        raise UserError(f"{path}: not a results record")
    if results.get("status") == "failed":
        raise UserError(
            f"{path}: the run failed ({results.get('error', 'no error recorded')}); nothing to show"
        )
    return results


def run_label(results: dict, folder: Path) -> str:
    """approach/model/corpus/scale seed, or the folder name when results.json lacks the coordinates."""
    keys = ("approach", "model", "corpus", "scale")
    if all(results.get(key) for key in keys):
        return f"{'/'.join(str(results[k]) for k in keys)} seed {results.get('seed', '?')}"
    return folder.name


def fields_of(schema: type) -> set[str]:
    """The field names of a config dataclass."""
    return {f.name for f in dataclass_fields(schema)}


def gold_documents(results: dict, split: str, gold_dir: Path | None) -> list[Document]:
    """The split's gold documents: `gold_dir` when given, else the corpus of the run's data config."""
    if gold_dir is not None:
        return read_split(gold_dir)
    data = (results.get("config") or {}).get("data")
    if not isinstance(data, dict):
        raise UserError(
            "the run's results.json holds no data config: pass --gold DIR (the split's .txt/.ann)"
        )
    # keys this version of DataConfig knows (an older or newer results.json may hold others)
    known = {key: value for key, value in data.items() if key in fields_of(DataConfig)}
    try:
        # validated, but not converted: only where the corpus lies matters here (batching keys may be missing)
        config = OmegaConf.merge(OmegaConf.structured(DataConfig), known)
    except OmegaConfBaseException as err:
        raise UserError(f"the run's data config cannot be read ({err.msg}): pass --gold DIR") from None
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    types = list(config.types) if config.types else None
    if config.name == "synthetic" and not config.root:
        return synthetic_splits()[split]
    if config.name == "synthetic":
        return read_split(Path(config.root) / split, types)
    # the training corpus loader's search: data.root, $PHARMACONER_DIR, the verified cache (never a download)
    root = locate_corpus(
        config.root, cache_dir((results.get("config") or {}).get("cache_dir")), download=False
    )
    return read_split(root / split, types)


def gold_triples(docs: list[Document]) -> dict[str, set[Triple]]:
    """{doc id: {(type, start, end)}} of gold documents."""
    return {doc.id: {(s.type, s.start, s.end) for s in doc.spans} for doc in docs}


def load_run(folder: Path, results: dict, split: str, gold: dict[str, set[Triple]], rule: str) -> RunErrors:
    """Score and classify one run's predictions of `split` against `gold`."""
    predictions = RunFolder(folder).predictions(split)
    if not predictions.is_dir():
        raise UserError(f"{predictions}: no predictions for split {split!r} in this run")
    system = read_ann_dir(predictions, "prediction")
    unknown = sorted(set(system) - set(gold))
    if unknown and not set(system) & set(gold):
        raise UserError(
            f"{predictions}: no prediction file names a gold document of {split} (e.g. {unknown[0]})"
        )
    return RunErrors(
        folder=folder,
        label=run_label(results, folder),
        scores=score_sets(gold, system, rule),
        outcomes=classify(gold, system, rule),
        recorded=results.get(split) if isinstance(results.get(split), dict) else {},
    )


def load_runs(
    folders: list[Path], split: str, gold_dir: Path | None = None, rule: str | None = None
) -> tuple[list[Document], list[RunErrors], str]:
    """(gold documents, runs, rule) for the page; `rule` defaults to the one the first run recorded."""
    records = [read_results(Path(folder)) for folder in folders]
    if rule is None:
        recorded = records[0].get(split) if isinstance(records[0].get(split), dict) else {}
        rule = recorded.get("rule", "codalab")
    docs = gold_documents(records[0], split, gold_dir)
    gold = gold_triples(docs)
    runs = [load_run(Path(f), r, split, gold, rule) for f, r in zip(folders, records, strict=True)]
    labels = [run.label for run in runs]
    for run in runs:  # two runs of one configuration (e.g. two seeds) are told apart by their folders
        if labels.count(run.label) > 1:
            run.label = f"{run.label} ({run.folder.name})"
    return docs, runs, rule
