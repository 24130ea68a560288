"""The inference settings saved beside a trained model (`<run dir>/model/clinical_ner.json`): what `predict`
needs besides weights and tokenizer to decode exactly as the training run did.

Each approach has one dataclass (`TokenClsInference`, `Seq2seqInference` in its inference.py); this module alone
writes and reads the file: `{"approach": <name>, <the dataclass's fields>}`, checked against the dataclass on
read (a missing, unknown or ill-typed field is a one-line user error).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from clinical_ner.errors import UserError
from clinical_ner.files.atomic import atomic_write_json
from clinical_ner.run.record.folder import INFERENCE_FILE


@dataclass
class InferenceSettings:
    """What every approach saves; a subclass adds its own fields and names its approach in `APPROACH`."""

    APPROACH: ClassVar[str]
    precision: str  # the run's trainer.precision (autocast at inference)
    eval_batch_size: int  # the default batch of `predict`


S = TypeVar("S", bound=InferenceSettings)


def settings_file(model_dir: Path) -> Path:
    """Where a model folder keeps its inference settings."""
    return Path(model_dir) / INFERENCE_FILE


def write_inference_settings(model_dir: Path, settings: InferenceSettings) -> None:
    """Save `settings` into a model folder (atomically)."""
    atomic_write_json(settings_file(model_dir), {"approach": settings.APPROACH, **asdict(settings)})


def _read(model_dir: Path) -> dict:
    path = settings_file(model_dir)
    if not path.is_file():
        raise UserError(f"{model_dir}: no {INFERENCE_FILE}: not a model folder saved by clinical_ner.train")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("approach"), str):
        raise UserError(f'{path}: expected an object with an "approach" name')
    return raw


def saved_approach(model_dir: Path) -> str:
    """The approach a model folder was trained with."""
    return _read(model_dir)["approach"]


def read_inference_settings(model_dir: Path, schema: type[S]) -> S:
    """A model folder's settings as `schema` (which must be the approach the folder was trained with)."""
    raw = _read(model_dir)
    path = settings_file(model_dir)
    if raw["approach"] != schema.APPROACH:
        raise UserError(f"{path}: a {raw['approach']} model, expected {schema.APPROACH}")
    fields = {k: v for k, v in raw.items() if k != "approach"}
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), fields))
    except OmegaConfBaseException as err:
        key = f"{err.full_key}: " if getattr(err, "full_key", None) else ""
        raise UserError(f"{path}: {key}{str(err).splitlines()[0]}") from None
