"""Compare ill-formed-tag rules on a trained run's dev predictions (decoding only, no retraining).
Usage: clinical-ner decode-rules RUN_DIR [--split dev]   (= python -m clinical_ner.analysis.decode_rules)"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer

from clinical_ner.approaches.tokencls.datamodule import TokenClsDataModule, Windowing
from clinical_ner.approaches.tokencls.inference import (
    TokenClsInference,
    evaluate_predictions,
    predict_windows,
)
from clinical_ner.data.batching import Batching
from clinical_ner.data.brat import read_split
from clinical_ner.errors import cli
from clinical_ner.models.backbone import load_token_classifier
from clinical_ner.run.record.folder import RunFolder
from clinical_ner.training.inference_settings import read_inference_settings


@cli
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    model_dir = RunFolder(args.run_dir).model
    folder = model_dir if model_dir.is_dir() else args.run_dir  # a run folder, or its model folder itself
    settings = read_inference_settings(folder, TokenClsInference)
    docs = read_split(Path(os.environ["PHARMACONER_DIR"]) / args.split)
    model = load_token_classifier(str(folder))
    id2label = {int(i): label for i, label in model.config.id2label.items()}
    data = TokenClsDataModule(
        {args.split: docs},
        AutoTokenizer.from_pretrained(folder),
        dict(model.config.label2id),
        Windowing.from_config(settings),
        Batching(1, 64, 0),
    )
    predictions = predict_windows(model, data.eval_dataloader(args.split), settings.precision)
    for rule in ("begin", "drop"):
        metrics, _ = evaluate_predictions(
            data.encoded[args.split], predictions, id2label, settings.label_position, rule
        )
        print(
            f"{args.split} ill_formed={rule}: P {metrics['precision']:.4f} R {metrics['recall']:.4f} F1 {metrics['f1']:.4f}"
        )


if __name__ == "__main__":
    main()
