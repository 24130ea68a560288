"""The seq2seq training loss applies the LM head to answer positions only; it must equal the model's own loss."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from clinical_ner.approaches.seq2seq.module import answer_loss


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    input_ids = torch.randint(3, vocab, (3, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 9:] = 0  # right padding
    labels = input_ids.clone()
    labels[0, :7] = labels[1, :4] = labels[2, :5] = -100  # prompts of different lengths
    labels[attention_mask == 0] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("lora", [False, True])
def test_answer_loss_and_gradients_equal_the_models_own(tiny_llama, lora):
    model = tiny_llama(LlamaForCausalLM, seed=1, vocab_size=97, pad_token_id=None, tie_word_embeddings=True)
    config = model.config
    if lora:
        model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        )
        for name, param in model.named_parameters():  # non-zero B so adapters change the output
            if "lora_B" in name:
                torch.nn.init.normal_(param)
    batch = _batch(config.vocab_size)
    reference = model(**batch).loss
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ours = answer_loss(model, batch)
    ours.backward()
    assert torch.allclose(ours, reference, atol=1e-6)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, expected[name], atol=1e-6), name


def test_the_lm_head_sees_only_the_labelled_positions(tiny_llama):
    model = tiny_llama(LlamaForCausalLM, seed=1, vocab_size=97, pad_token_id=None)
    batch = _batch(model.config.vocab_size)
    rows = []  # what the head projects: a [positions, hidden] matrix, no batch x sequence grid
    model.lm_head.register_forward_hook(lambda m, args, out: rows.append(tuple(args[0].shape)))
    answer_loss(model, batch)
    labelled = int((batch["labels"][:, 1:] != -100).sum())  # after the causal shift
    assert rows == [(labelled, model.config.hidden_size)]
    assert labelled < batch["input_ids"].numel() // 2  # prompts and padding are most positions here
