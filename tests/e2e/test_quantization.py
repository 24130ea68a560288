"""QLoRA (`quantization=nf4`) on the CPU at toy size, through the same functions a paper run uses: a saved
checkpoint loaded in 4-bit by `build_token_classifier`, prepared and wrapped by `apply_lora`, trained by the
Trainer of `finetune_trainer` (the paper recipe's bf16-mixed), saved by `save_model` and reloaded by
`load_token_classifier`. bitsandbytes 0.50 runs 4-bit on CPU; the toy sizes keep every quantized output a
multiple of 32 (its CPU kernels need it)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import LlamaForCausalLM, LlamaForTokenClassification

from clinical_ner.approaches.tokencls.datamodule import WindowDataset
from clinical_ner.approaches.tokencls.inference import TokenClsInference
from clinical_ner.approaches.tokencls.module import TokenClsModule
from clinical_ner.config import compose_config
from clinical_ner.data.batching import LengthGroupedBatchSampler, PadCollator
from clinical_ner.errors import UserError
from clinical_ner.models import quantize
from clinical_ner.models.attention import is_bidirectional
from clinical_ner.models.backbone import (
    TOKEN_CLS_HEAD,
    build_token_classifier,
    count_parameters,
    load_token_classifier,
)
from clinical_ner.models.lora import apply_lora
from clinical_ner.training.checkpoints import BASE_KEY, load_trained
from clinical_ner.training.fit import finetune_trainer, make_callbacks
from clinical_ner.training.inference_settings import read_inference_settings
from clinical_ner.training.optim import OptimSpec
from clinical_ner.training.saving import save_model

pytest.importorskip("bitsandbytes")
LABELS = ["O", "B-X", "I-X", "B-Y", "I-Y"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_llama) -> Path:
    """A toy causal-LM Llama saved like a real checkpoint (safetensors): hidden 128, head_dim 32, MLP 256."""
    folder = tmp_path_factory.mktemp("base")
    # k/v outputs 32: the smallest size the 4-bit CPU kernels take
    model = tiny_llama(
        LlamaForCausalLM, vocab_size=96, hidden_size=128, intermediate_size=256, num_key_value_heads=1
    )
    model.save_pretrained(folder)
    return folder


def paper_cfg(checkpoint: Path, tmp_path: Path, *extra: str):
    return compose_config(
        ["scale=paper", f"model.path={checkpoint}", "quantization=nf4", "trainer.accelerator=cpu"]
        + ["trainer.max_steps=3", "logger=none", "trainer.enable_progress_bar=false", "approach.lora.r=4"]
        + ["trainer.gradient_checkpointing=true", f"output_dir={tmp_path}", *extra]
    )


def quantized_build(cfg, tokenizer):
    model = build_token_classifier(
        cfg.model, cfg.scale, tokenizer, LABELS, bidirectional=True, quantization=cfg.quantization
    )
    return apply_lora(
        model,
        cfg.approach.lora,
        "TOKEN_CLS",
        modules_to_save=[TOKEN_CLS_HEAD],
        gradient_checkpointing=cfg.trainer.gradient_checkpointing,
    )


class Windows(L.LightningDataModule):
    def __init__(self, windows, batch_size: int) -> None:
        super().__init__()
        self.windows, self.batch_size = windows, batch_size

    def train_dataloader(self):
        sampler = LengthGroupedBatchSampler([len(w.input_ids) for w in self.windows], self.batch_size, seed=0)
        return DataLoader(WindowDataset(self.windows), batch_sampler=sampler, collate_fn=PadCollator(0))


def toy_windows(n: int = 24):
    generator = torch.Generator().manual_seed(1)
    return [
        SimpleNamespace(
            input_ids=torch.randint(1, 96, (length,), generator=generator).tolist(),
            labels=torch.randint(0, len(LABELS), (length,), generator=generator).tolist(),
        )
        for length in torch.randint(6, 16, (n,), generator=generator).tolist()
    ]


class StubTokenizer:
    """What the backbone and save_model need of a tokenizer."""

    pad_token_id = 0

    def save_pretrained(self, folder) -> None:
        Path(folder, "tokenizer_saved").write_text("yes")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["scale=paper", "approach.finetune=full"], "approach.finetune=full"),
        (["scale=paper", "corpus=es"], "continual pretraining"),
        (["approach.finetune=lora"], "pretrained weights"),  # tiny scale
        (["scale=paper", "quantization.compute_dtype=int8"], "compute_dtype"),
    ],
)
def test_impossible_quantized_runs_are_refused_at_start(overrides, message):
    with pytest.raises(UserError, match=message):
        quantize.check_quantization(compose_config(["quantization=nf4", *overrides]))


def test_paper_recipes_pass_the_check():
    for approach in ("tokencls", "seq2seq"):
        quantize.check_quantization(
            compose_config(["quantization=nf4", "scale=paper", f"approach={approach}"])
        )


def test_base_loads_in_4bit_with_an_unquantized_trainable_head(checkpoint, tmp_path):
    cfg = paper_cfg(checkpoint, tmp_path)
    model = quantized_build(cfg, StubTokenizer())
    base = model.get_base_model()
    q_proj = base.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer.weight).__name__ == "Params4bit"
    assert q_proj.base_layer.weight.dtype == torch.uint8 and not q_proj.base_layer.weight.requires_grad
    head = base.score.modules_to_save["default"]
    assert type(head).__name__ == "Linear" and head.weight.requires_grad  # skipped by quantization, trained
    assert is_bidirectional(base)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)
    trainable_count, total = count_parameters(model)
    plain = LlamaForTokenClassification.from_pretrained(checkpoint, num_labels=len(LABELS))
    unquantized = sum(p.numel() for p in plain.parameters())
    assert total >= unquantized  # 4-bit weights counted unpacked (plus adapters)


def test_qlora_trains_only_adapters_and_head_then_reloads(checkpoint, tmp_path):
    cfg = paper_cfg(checkpoint, tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"  # the paper recipe's, kept
    L.seed_everything(0, verbose=False)
    model = quantized_build(cfg, StubTokenizer())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    module = TokenClsModule(
        model, OptimSpec(partial(torch.optim.AdamW), 1e-2, 0.0, 1.0), lambda p: {}, pad_id=0
    )
    callbacks, _, _ = make_callbacks(cfg, tmp_path)  # includes the check that the weights really are 4-bit
    trainer = finetune_trainer(cfg, tmp_path, callbacks, None)
    trainer.fit(module, datamodule=Windows(toy_windows(), batch_size=4))
    assert trainer.global_step == 3

    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert any("lora_B" in n for n in changed)
    assert any("score.modules_to_save" in n for n in changed)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert not changed & frozen  # the 4-bit base, the original head and the norms did not move
    weight = model.get_base_model().model.layers[1].mlp.down_proj.base_layer.weight
    assert type(weight).__name__ == "Params4bit" and weight.dtype == torch.uint8  # still 4-bit after training
    for name, param in model.named_parameters():  # fp32 what is trained, bf16 the rest that is not 4-bit
        if param.is_floating_point():
            assert param.dtype == (torch.float32 if param.requires_grad else torch.bfloat16), name

    # its checkpoint holds the adapters and the head, not the 4-bit base, and loads back onto a fresh build
    trainer.save_checkpoint(tmp_path / "qlora.ckpt")
    saved = torch.load(tmp_path / "qlora.ckpt", map_location="cpu", weights_only=True)
    assert set(saved["state_dict"]) == {f"model.{n}" for n, p in model.named_parameters() if p.requires_grad}
    assert BASE_KEY in saved
    L.seed_everything(0, verbose=False)  # the new head's frozen original is drawn as the run's was
    optim = OptimSpec(partial(torch.optim.AdamW), 1e-2, 0.0, 1.0)
    fresh = TokenClsModule(quantized_build(cfg, StubTokenizer()), optim, lambda p: {}, 0)
    load_trained(fresh, saved, "qlora.ckpt")
    for name, value in fresh.model.named_parameters():
        if value.requires_grad:
            assert torch.equal(value.detach(), dict(model.named_parameters())[name].detach())  # fp32 both

    folder = tmp_path / "model"
    settings = TokenClsInference("bf16-true", 8, "last", "begin", 256, 32)
    save_model(module.model, StubTokenizer(), folder, settings)
    assert (folder / "adapter_model.safetensors").is_file() and (folder / quantize.QLORA_FILE).is_file()
    assert not (folder / "config.json").exists()  # else transformers would take the folder for a full model
    assert read_inference_settings(folder, TokenClsInference) == settings

    reloaded = load_token_classifier(str(folder)).eval()
    assert quantize.is_quantized(reloaded) and is_bidirectional(reloaded.get_base_model())
    assert reloaded.get_base_model().config.id2label == dict(enumerate(LABELS))
    batch = PadCollator(0)(list(WindowDataset(toy_windows(8))))
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        trained = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        again = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    # same 4-bit base, same adapter and head: equal up to bf16 rounding of the reloaded fp32 adapters
    assert torch.allclose(trained, again, atol=0.05), (trained - again).abs().max()
    mask = batch["attention_mask"].bool()
    assert (trained.argmax(-1)[mask] == again.argmax(-1)[mask]).float().mean() > 0.95


@pytest.mark.slow
def test_qlora_run_end_to_end(checkpoint, tmp_path, monkeypatch):
    from clinical_ner.models.tokenizer import load_or_train_tokenizer
    from clinical_ner.run.pipeline import run

    monkeypatch.setenv("CLINICAL_NER_CACHE", str(tmp_path / "cache"))
    # a "paper" checkpoint folder with a tokenizer of its own, as model.path expects
    from clinical_ner.data.synthetic import synthetic_splits

    texts = [doc.text for doc in synthetic_splits()["train"]]
    tokenizer = load_or_train_tokenizer("byte_level_bpe", 320, texts, tmp_path / "cache")
    folder = tmp_path / "checkpoint"
    model = LlamaForCausalLM.from_pretrained(checkpoint)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cfg = paper_cfg(folder, tmp_path / "run", "data=synthetic", "data.batch_size=4", "data.eval_limit=4")
    results = run(cfg)
    assert results["status"] == "complete" and results["train"]["steps"] == 3
    assert quantize.is_adapter_folder(tmp_path / "run" / "model")
    # `predict` tags new text with the saved adapter on its re-quantized base, as the run did
    from clinical_ner.data.types import Document
    from clinical_ner.metrics.span_scorer import parse_official_ann
    from clinical_ner.predict import tag_documents

    docs = [Document(d.id, d.text) for d in synthetic_splits()["test"][:4]]
    tagged = tag_documents(tmp_path / "run" / "model", docs)
    for doc in docs:
        written = parse_official_ann(tmp_path / "run" / "predictions" / "test" / f"{doc.id}.ann")
        assert {(s.type, s.start, s.end) for s in tagged[doc.id]} == written


@pytest.mark.parametrize(
    ("devices", "local_rank", "expected"),
    [
        ([2, 3], 0, 2),  # trainer.devices=[2,3]: rank 1 trains on GPU 3, so its 4-bit base must load there
        ([2, 3], 1, 3),
        ("2,3", 1, 3),
        ("1,", 0, 1),  # Lightning's one-GPU list
        (2, 1, 1),  # a count: GPUs 0..n-1
        ("2", 1, 1),
        ("auto", 1, 1),
        (-1, 0, 0),
    ],
)
def test_each_rank_loads_its_4bit_base_on_the_gpu_it_trains_on(devices, local_rank, expected, monkeypatch):
    from omegaconf import OmegaConf

    if isinstance(devices, list):
        devices = OmegaConf.create({"d": devices}).d  # as cfg.trainer.devices arrives: a ListConfig
    assert quantize.gpu_index(devices, local_rank) == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    assert quantize.load_kwargs(compose_config([]).quantization, devices=devices)["device_map"] == {
        "": expected
    }


def test_a_rank_beyond_the_listed_gpus_is_refused():
    with pytest.raises(UserError, match="lists 2 GPU"):
        quantize.gpu_index([2, 3], 2)
