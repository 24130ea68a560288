"""Continual pretraining: labels shifted exactly once, the stage's weight cache (hit, corruption, lock), the
hand-over to token classification, and throughput/MFU logging."""

from __future__ import annotations

import csv
import json
import logging
import re
import threading
from pathlib import Path

import lightning as L
import pytest
import torch
from composing import NANO, compose_train
from torch.utils.data import DataLoader
from transformers import LlamaConfig, LlamaForCausalLM

import clinical_ner.pretrain.stage as pretrain_run
from clinical_ner.data.synthetic import synthetic_splits
from clinical_ner.errors import UserError
from clinical_ner.models.attention import is_bidirectional
from clinical_ner.models.backbone import build_token_classifier
from clinical_ner.pretrain.cache import MANIFEST, PretrainedEntry
from clinical_ner.pretrain.module import CausalLMModule
from clinical_ner.pretrain.packing import BlockDataset
from clinical_ner.run.pipeline import run
from clinical_ner.training.optim import OptimSpec

CONF = Path(__file__).resolve().parents[2] / "conf"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "download"
TINY = [
    "data=synthetic",
    "logger=none",
    "trainer.enable_progress_bar=false",
    *NANO,
    "pretrain.block_size=32",
    "pretrain.batch_size=4",
    "pretrain.max_tokens=1024",
    "pretrain.eval_max_tokens=256",
    "pretrain.trainer.log_every_n_steps=2",
]


def tiny_lm(vocab: int = 16) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def test_loss_is_next_token_cross_entropy():
    torch.manual_seed(0)
    module = CausalLMModule(tiny_lm(), OptimSpec(torch.optim.AdamW, 1e-3, 0.0, 0.1))
    ids = torch.randint(0, 16, (2, 12))
    logits = module(ids)
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 16), ids[:, 1:].reshape(-1))
    assert torch.allclose(module._loss(ids), manual, atol=1e-5)


def test_model_learns_next_token_not_next_next():
    """On a periodic sequence (0..K-1 repeated), a model trained by the module predicts x[t+1] from x[:t+1];
    with labels shifted twice it would predict x[t+2] instead and score ~0 here."""
    torch.manual_seed(0)
    period, length = 7, 32
    phases = torch.randint(0, period, (256, 1))
    blocks = (phases + torch.arange(length)) % period
    module = CausalLMModule(tiny_lm(), OptimSpec(torch.optim.AdamW, 1e-2, 0.1, 0.1))
    loader = DataLoader(BlockDataset(blocks.numpy()), batch_size=32, shuffle=True)
    quiet_trainer(max_steps=60, precision="32-true").fit(module, train_dataloaders=loader)
    module.eval()
    with torch.no_grad():
        predicted = module(blocks[:32]).argmax(-1)
    next_token = (predicted[:, :-1] == blocks[:32, 1:]).float().mean().item()
    next_next = (predicted[:, :-2] == blocks[:32, 2:]).float().mean().item()
    assert next_token > 0.95, next_token
    assert next_next < 0.1, next_next


def write_corpora(root: Path) -> Path:
    """A small es/ (JSON Lines of synthetic Spanish text) + en/ (the minimal SPL fixture, twice) corpus."""
    (root / "es").mkdir(parents=True)
    (root / "en").mkdir()
    docs = synthetic_splits()["train"]
    with open(root / "es" / "sample.jsonl", "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps({"id": doc.id, "text": doc.text}, ensure_ascii=False) + "\n")
    for name in ("a", "b"):
        (root / "en" / f"{name}.xml").write_bytes((FIXTURES / "spl_minimal.xml").read_bytes())
    return root


@pytest.fixture
def tiny_cfg(tmp_path):
    corpora = write_corpora(tmp_path / "corpora")

    def make(*overrides: str):
        where = [
            f"corpus.root={corpora}",
            f"cache_dir={tmp_path / 'cache'}",
            f"output_dir={tmp_path / 'run'}",
        ]
        return compose_train([*TINY, *where, *overrides])

    return make


def test_stage_caches_and_rebuilds_corrupt_entries(tiny_cfg, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="clinical_ner.training.callbacks")
    trained = []
    real_train = pretrain_run.train_causal_lm
    monkeypatch.setattr(
        pretrain_run, "train_causal_lm", lambda *a, **k: trained.append(1) or real_train(*a, **k)
    )
    cfg = tiny_cfg("corpus=bilingual", "logger=csv", "pretrain.use_epoch=1")
    first = pretrain_run.run_pretrain(cfg, tmp_path / "run")
    section = first.section
    assert section["cache_hit"] is False and len(trained) == 1
    assert section["epochs"] == 2 and section["use_epoch"] == 1 and section["steps"] == 16
    assert first.weights.name == "epoch-1" and (first.weights.parent / "epoch-2" / "config.json").is_file()
    assert section["tokens"] == 2 * 1024 and section["tokens_per_s"] > 0 and section["mfu"] > 0
    assert section["pharmaconer_dev_ppl_after"] < section["pharmaconer_dev_ppl_before"]
    assert section["val_ppl_after"] < section["val_ppl_before"]
    assert section["documents"]["en_train"] + section["documents"]["en_val"] == 4  # 2 sections x 2 files
    # one log line per epoch, for a run whose progress bar is not drawn
    pattern = r"pretraining epoch (\d)/2: train loss \d+\.\d+, (\w+) perplexity (\d+\.\d+), \d+\.\d min"
    lines = re.findall(pattern, caplog.text)
    assert [epoch for epoch, _, _ in lines] == ["1", "2"]
    for (
        epoch,
        name,
        perplexity,
    ) in lines:  # the held-out perplexity measured after that epoch (float32 logged)
        assert float(perplexity) == pytest.approx(section["perplexity_by_epoch"][int(epoch)][name], rel=1e-6)
    # throughput and MFU went through Lightning's ThroughputMonitor to the logger
    with open(tmp_path / "run" / "csv_pretrain" / "metrics.csv", encoding="utf-8") as handle:
        columns = next(csv.reader(handle))
    assert {"train/device/items_per_sec", "train/device/mfu"} <= set(columns)

    # another seed, another use_epoch, fine-tuning limits: same weights, no training
    again = pretrain_run.run_pretrain(
        tiny_cfg("corpus=bilingual", "seed=7", "pretrain.use_epoch=2", "trainer.max_steps=5"),
        tmp_path / "run",
    )
    assert again.section["cache_hit"] is True and len(trained) == 1
    assert again.weights == first.weights.parent / "epoch-2"
    assert again.section["val_ppl_before"] == section["val_ppl_before"]

    entry = first.weights.parent
    (entry / MANIFEST).unlink()  # killed before the manifest was written
    assert pretrain_run.run_pretrain(cfg, tmp_path / "run").section["cache_hit"] is False
    weights = entry / "epoch-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated file
    assert pretrain_run.run_pretrain(cfg, tmp_path / "run").section["cache_hit"] is False
    assert len(trained) == 3
    assert pretrain_run.run_pretrain(cfg, tmp_path / "run").section["cache_hit"] is True

    # a pretrain.* setting that changes the weights is another entry
    other = pretrain_run.run_pretrain(tiny_cfg("corpus=bilingual", "pretrain.lr=5e-4"), tmp_path / "run")
    assert other.section["cache_hit"] is False and other.weights.parent != entry


def test_concurrent_jobs_wait_instead_of_training_twice(tmp_path):
    builds = []
    barrier = threading.Barrier(3)

    def job():
        entry = PretrainedEntry(tmp_path, "x", {"k": 1})
        barrier.wait()
        with entry.locked():
            if entry.read_manifest() is None:
                builds.append(1)
                entry.clear()
                entry.epoch_folder(1).mkdir()
                (entry.epoch_folder(1) / "w.bin").write_bytes(b"weights")
                entry.write_manifest(1, {})

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1


@pytest.mark.parametrize("model", ["llama2", "llama3_2"])  # untied / tied embeddings, both tokenizer kinds
def test_token_classifier_starts_from_pretrained_backbone(tiny_cfg, tmp_path, model):
    cfg = tiny_cfg("corpus=es", f"model={model}", "pretrain.trainer.max_epochs=1", "pretrain.use_epoch=1")
    outcome = pretrain_run.run_pretrain(cfg, tmp_path / "run")
    lm = LlamaForCausalLM.from_pretrained(outcome.weights)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(outcome.weights)
    labels = ["O", "B-X", "I-X"]
    model = build_token_classifier(
        cfg.model, cfg.scale, tokenizer, labels, bidirectional=True, init_from=str(outcome.weights)
    )
    assert is_bidirectional(model) and model.config.num_labels == 3
    assert model.training  # from_pretrained returns eval mode; fine-tuning needs its dropout back
    lm_state = lm.model.state_dict()
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, lm_state[name]), name
    assert model.score.out_features == 3


def test_run_chains_pretraining_into_fine_tuning(tiny_cfg):
    results = run(
        tiny_cfg("corpus=en", "trainer.max_steps=2", "pretrain.trainer.max_epochs=1", "pretrain.use_epoch=1")
    )
    assert results["status"] == "complete" and results["corpus"] == "en"
    assert results["pretrain"]["cache_hit"] is False and results["train"]["steps"] == 2
    # the stage's own phases come right after the run's corpus is read and sum to its `seconds`
    stage = ["pretrain_prepare", "pretrain_lock", "pretrain_data", "pretrain_build", "pretrain_validate"]
    assert list(results["timings"])[:7] == ["load_corpus", *stage, "pretrain_fit"]
    spent = sum(v for k, v in results["timings"].items() if k.startswith("pretrain_"))
    assert results["pretrain"]["seconds"] == pytest.approx(spent)
    assert results["pretrain"]["fit_seconds"] == results["timings"]["pretrain_fit"]
    again = run(
        tiny_cfg(
            "corpus=en",
            "seed=3",
            "trainer.max_steps=2",
            "pretrain.trainer.max_epochs=1",
            "pretrain.use_epoch=1",
        )
    )
    assert again["pretrain"]["cache_hit"] is True
    assert [k for k in again["timings"] if k.startswith("pretrain_")] == ["pretrain_prepare", "pretrain_lock"]


def test_use_epoch_out_of_range_is_user_error(tiny_cfg, tmp_path):
    with pytest.raises(UserError, match="pretrain.use_epoch=3"):
        pretrain_run.run_pretrain(tiny_cfg("corpus=es", "pretrain.use_epoch=3"), tmp_path / "run")


@pytest.mark.parametrize("tied", [False, True])
def test_formula_flops_counts_the_lm_head_also_when_tied(tiny_llama, tied):
    from transformers import LlamaForCausalLM

    from clinical_ner.pretrain.throughput import formula_flops

    sizes = {"vocab_size": 100, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    heads = {"num_attention_heads": 2, "num_key_value_heads": None, "pad_token_id": None}
    model = tiny_llama(LlamaForCausalLM, seed=None, tie_word_embeddings=tied, **sizes, **heads)
    body = sum(p.numel() for p in model.model.layers.parameters()) + model.model.norm.weight.numel()
    assert formula_flops(model, tokens=10) == 6 * 10 * (body + 100 * 16)  # every matmul weight, once
