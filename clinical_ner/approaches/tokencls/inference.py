"""Token-classification inference: windows -> tag ids -> character spans -> official scores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from clinical_ner.approaches.tokencls.datamodule import EncodedSplit, TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.tagging import decode_document, tags_for_seqeval
from clinical_ner.config import IllFormed, LabelPosition
from clinical_ner.console.progress import bar
from clinical_ner.data.batching import Batching
from clinical_ner.data.types import Document, Span
from clinical_ner.metrics.span_scorer import score_documents
from clinical_ner.metrics.token_metrics import seqeval_f1
from clinical_ner.models.backbone import load_token_classifier
from clinical_ner.models.precision import autocast_for
from clinical_ner.training.inference_settings import InferenceSettings


@dataclass
class TokenClsInference(InferenceSettings):
    """How a token-classification run windowed its text and decoded tags (clinical_ner/training/inference_settings.py)."""

    APPROACH = "tokencls"
    label_position: LabelPosition
    ill_formed: IllFormed
    max_length: int
    stride: int


@torch.inference_mode()
def predict_windows(model, loader: DataLoader, precision: str = "32") -> dict[int, list[int]]:
    """Argmax tag id for every token of every window, keyed by window index."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    predictions: dict[int, list[int]] = {}
    for batch in loader:
        with autocast_for(precision, device):
            logits = model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits
        predictions.update(tags_by_window(logits, batch))
    model.train(was_training)
    return predictions


def tags_by_window(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[int, list[int]]:
    """Argmax tag ids of a batch's real (unpadded) tokens, keyed by window index."""
    tags = logits.argmax(-1).cpu()
    lengths = batch["attention_mask"].sum(-1).tolist()
    return {
        index: tags[row, :length].tolist()
        for row, (index, length) in enumerate(zip(batch["index"].tolist(), lengths, strict=True))
    }


def spans_from_predictions(
    encoded: EncodedSplit,
    predictions: Mapping[int, list[int]],
    id2label: Mapping[int, str],
    label_position: str,
    rule: str,
) -> dict[str, list[Span]]:
    """Decode each document's windows back to character spans on its original text."""
    result: dict[str, list[Span]] = {}
    for doc in encoded.docs:
        indices = encoded.doc_windows[doc.id]
        windows = [encoded.windows[i] for i in indices]
        tags = [predictions[i] for i in indices]
        result[doc.id] = decode_document(windows, tags, id2label, label_position, rule, doc.text)
    return result


def evaluate_predictions(
    encoded: EncodedSplit,
    predictions: Mapping[int, list[int]],
    id2label: Mapping[int, str],
    label_position: str,
    rule: str,
) -> tuple[dict, dict[str, list[Span]]]:
    """Official-rule span scores (codalab) plus strict IOB2 seqeval F1, and the predicted spans."""
    spans = spans_from_predictions(encoded, predictions, id2label, label_position, rule)
    metrics = score_documents(encoded.docs, spans, rule="codalab").to_dict()
    order = range(len(encoded.windows))
    gold_tags, pred_tags = tags_for_seqeval(
        [encoded.windows[i] for i in order], [predictions[i] for i in order], id2label
    )
    metrics["seqeval_f1"] = seqeval_f1(gold_tags, pred_tags)
    return metrics, spans


def tag_with_tokencls(
    folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    settings: TokenClsInference,
    docs: list[Document],
    batch_size: int | None,
) -> dict[str, list[Span]]:
    """Predicted spans per document id from a saved token-classification run (`predict`), windowed and
    decoded as in training."""
    model = load_token_classifier(str(folder))
    label2id = dict(model.config.label2id)
    id2label = {int(i): label for i, label in model.config.id2label.items()}
    batching = Batching(batch_size=1, eval_batch_size=batch_size or settings.eval_batch_size, seed=0)
    data = TokenClsDataModule(
        {"predict": docs}, tokenizer, label2id, Windowing.from_config(settings), batching
    )
    batches = bar(data.eval_dataloader("predict"), desc="tagging", unit="batch")
    predictions = predict_windows(model, batches, settings.precision)
    return spans_from_predictions(
        data.encoded["predict"], predictions, id2label, settings.label_position, settings.ill_formed
    )
