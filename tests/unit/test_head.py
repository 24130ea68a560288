"""The token-classification head (`score`) is trained and saved, with full fine-tuning and with LoRA."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaForTokenClassification

from clinical_ner.config import LoraConfig
from clinical_ner.models.attention import set_attention_direction
from clinical_ner.models.backbone import TOKEN_CLS_HEAD, count_parameters
from clinical_ner.models.lora import apply_lora


@pytest.fixture
def tiny(tiny_llama):
    def make() -> LlamaForTokenClassification:
        model = tiny_llama(LlamaForTokenClassification, vocab_size=40, num_labels=3)
        set_attention_direction(model, True)
        return model

    return make


def train_steps(model, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(1, 40, (4, 10), generator=torch.Generator().manual_seed(1))
    labels = ids % 3
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_full_finetune_trains_and_saves_head(tiny, tmp_path):
    model = tiny()
    before = model.score.weight.detach().clone()
    train_steps(model)
    assert not torch.allclose(before, model.score.weight)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert torch.equal(saved["score.weight"], model.score.weight.detach())


def test_lora_keeps_head_trainable_and_merges_into_saved_model(tiny, tmp_path):
    model = apply_lora(
        tiny(), LoraConfig(r=4, alpha=8, dropout=0.0), "TOKEN_CLS", modules_to_save=[TOKEN_CLS_HEAD]
    )
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any(f"{TOKEN_CLS_HEAD}.modules_to_save" in name for name in trainable)
    assert any("lora_A" in name for name in trainable)
    assert not any("embed_tokens" in name for name in trainable)  # the backbone stays frozen
    n_trainable, n_total = count_parameters(model)
    assert n_trainable < n_total / 2
    head = next(
        p for n, p in model.named_parameters() if f"{TOKEN_CLS_HEAD}.modules_to_save" in n and "weight" in n
    )
    before = head.detach().clone()
    train_steps(model)
    assert not torch.allclose(before, head)
    ids = torch.tensor([[3, 4, 5, 6]])
    model.eval()  # the head has its own dropout
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path)
    reloaded = LlamaForTokenClassification.from_pretrained(tmp_path)
    set_attention_direction(reloaded, True)
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(input_ids=ids).logits, expected, atol=1e-5)
