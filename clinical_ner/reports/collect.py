"""Find and read `results.json` files: complete and failed runs are kept; unreadable or partial files are
reported with a warning (naming the path) and skipped, so one bad file never stops a report."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_ner.run.record.folder import RESULTS_FILE, is_stale

log = logging.getLogger(__name__)

COORDINATES = ("approach", "model", "corpus", "scale", "seed")
SCORES = ("precision", "recall", "f1")


def _text_field(name: str) -> property:
    """A Run property: the record's top-level `name` as text ("None" when it has none)."""
    return property(lambda run: str(run.data.get(name)), doc=f"The record's `{name}`, as text.")


@dataclass(frozen=True)
class Run:
    """One results.json: where it lies and what it holds."""

    path: Path
    data: Mapping[str, Any]

    status = _text_field("status")
    approach = _text_field("approach")
    model = _text_field("model")
    corpus = _text_field("corpus")
    scale = _text_field("scale")

    @property
    def seed(self) -> int | None:
        seed = self.data.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def error(self) -> str:
        """The first line of the error (failed runs)."""
        lines = str(self.data.get("error") or "unknown error").strip().splitlines()
        return lines[0] if lines else "unknown error"

    @property
    def epoch(self) -> int | None:
        """Which continual-pretraining epoch fed fine-tuning (None without continual pretraining)."""
        if self.corpus == "none":
            return None
        pretrain = self.data.get("pretrain")
        if isinstance(pretrain, Mapping) and isinstance(pretrain.get("use_epoch"), int):
            return pretrain["use_epoch"]
        # failed runs have no pretrain section, but their config says which epoch they would have used
        value = self.config("pretrain", "use_epoch")
        return value if isinstance(value, int) else None

    @property
    def data_name(self) -> str:
        """The NER corpus the run was trained and scored on (`data.name`: pharmaconer, synthetic)."""
        return str(self.config("data", "name") or "pharmaconer")

    @property
    def budget(self) -> str:
        """The fine-tuning budget: epochs, steps and training documents."""
        steps = self.config("trainer", "max_steps")
        return ", ".join(
            [
                f"max_epochs={self.config('trainer', 'max_epochs')}",
                f"max_steps={'none' if steps in (None, -1) else steps}",
                f"train_limit={_limit(self.config('data', 'train_limit'), 'documents')}",
            ]
        )

    @property
    def pretrain_budget(self) -> str:
        """The continual-pretraining budget ("" without continual pretraining)."""
        if self.corpus == "none":
            return ""
        # pretrain.epochs: the key of runs written before the pretraining stage had its own `trainer`
        epochs = self.config("pretrain", "trainer", "max_epochs") or self.config("pretrain", "epochs")
        tokens = self.config("pretrain", "max_tokens")
        return f"pretraining {epochs} epochs of {_limit(tokens, 'tokens')}{'' if tokens is None else ' each'}"

    def section(self, name: str) -> Mapping[str, Any]:
        """A top-level section (`test`, `train`, ...) or an empty mapping when absent or null."""
        value = self.data.get(name)
        return value if isinstance(value, Mapping) else {}

    def config(self, *keys: str) -> Any:
        """A value of the resolved config by path, None when absent."""
        node: Any = self.data.get("config")
        for key in keys:
            if not isinstance(node, Mapping):
                return None
            node = node.get(key)
        return node

    @property
    def per_document(self) -> dict[str, tuple[int, int, int]] | None:
        """Test counts per document {id: (tp, fp, fn)}, None when the run did not record them."""
        raw = self.section("test").get("per_document")
        if not isinstance(raw, Mapping) or not raw:
            return None
        return {str(doc): (int(c[0]), int(c[1]), int(c[2])) for doc, c in raw.items()}


def _limit(value: object, unit: str) -> str:
    return f"all {unit}" if value in (None, -1) else f"{value} {unit}"


@dataclass
class Collection:
    """What a set of folders held: usable runs (complete or failed) and the files that were skipped."""

    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def complete(self) -> list[Run]:
        return [run for run in self.runs if run.status == "complete"]

    @property
    def failed(self) -> list[Run]:
        return [run for run in self.runs if run.status == "failed"]


def find_results(folders: Iterable[Path | str]) -> list[Path]:
    """Every results.json below the folders (a Hydra sweep folder holds one sub-folder per cell), sorted;
    files in `stale-*` folders are left out."""
    found: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if folder.is_file() and folder.name == RESULTS_FILE:
            found.add(folder)
        elif folder.is_dir():
            # stale-* folders hold what an earlier run of another config left (clinical_ner/sweep.py)
            found.update(
                path for path in folder.rglob(RESULTS_FILE) if path.is_file() and not is_stale(path, folder)
            )
        else:
            log.warning("%s: not a folder or a results.json; ignored", folder)
    return sorted(found)


def problem(data: Any) -> str | None:
    """Why a parsed results.json cannot be reported (None when it can)."""
    if not isinstance(data, Mapping):
        return "not a JSON object"
    status = data.get("status")
    if status not in ("complete", "failed"):
        return f"status {status!r} is neither complete nor failed"
    missing = [key for key in COORDINATES[:4] if not isinstance(data.get(key), str)]
    if missing:
        return f"missing coordinates: {', '.join(missing)}"
    if status == "failed":
        return None
    if not isinstance(data.get("seed"), int):
        return "missing seed"
    test = data.get("test")
    if not isinstance(test, Mapping):
        return "no test section"
    if not all(_is_number(test.get(key)) for key in SCORES):
        return "test precision/recall/f1 missing or not numbers"
    return _per_document_problem(test)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _per_document_problem(test: Mapping[str, Any]) -> str | None:
    raw = test.get("per_document")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        return "test.per_document is not an object"
    for counts in raw.values():
        if not (isinstance(counts, list) and len(counts) == 3 and all(isinstance(c, int) for c in counts)):
            return "test.per_document holds something other than [tp, fp, fn] integer triples"
    return None


def read_run(path: Path) -> tuple[Run | None, str | None]:
    """(run, None) for a usable file, else (None, the reason)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    reason = problem(data)
    return (None, reason) if reason else (Run(path, data), None)


def _check_counts(run: Run) -> None:
    """Warn when per-document counts do not add up to the reported totals (intervals would be off)."""
    per_document = run.per_document
    if per_document is None:
        return
    test = run.section("test")
    totals = [sum(counts[i] for counts in per_document.values()) for i in range(3)]
    reported = [test.get(key) for key in ("tp", "fp", "fn")]
    if all(isinstance(value, int) for value in reported) and totals != reported:
        log.warning("%s: test.per_document sums to %s but tp/fp/fn are %s", run.path, totals, reported)


def collect(folders: Iterable[Path | str]) -> Collection:
    """Read every results.json below `folders`; warn about (and skip) the ones that cannot be used."""
    collection = Collection()
    for path in find_results(folders):
        run, reason = read_run(path)
        if run is None:
            log.warning("%s: skipped, %s", path, reason)
            collection.skipped.append((path, str(reason)))
            continue
        _check_counts(run)
        collection.runs.append(run)
    return collection
