"""The approaches a run can fine-tune with: `approach.name` -> its stage.

A new approach is one folder under clinical_ner/approaches/ holding a `FineTuneStage` (clinical_ner/training/
stage.py), one entry here, and its config (schema in clinical_ner/config/schema.py, conf/approach/<name>.yaml).
"""

from __future__ import annotations

from clinical_ner.approaches.seq2seq.stage import Seq2seqStage
from clinical_ner.approaches.tokencls.stage import TokenClsStage
from clinical_ner.errors import UserError
from clinical_ner.training.stage import FineTuneStage

APPROACHES: dict[str, type[FineTuneStage]] = {"tokencls": TokenClsStage, "seq2seq": Seq2seqStage}


def stage_class(name: str) -> type[FineTuneStage]:
    """The stage of approach `name`."""
    try:
        return APPROACHES[str(name)]
    except KeyError:
        raise UserError(f"unknown approach={name}; expected one of {', '.join(APPROACHES)}") from None
