"""The seq2seq training loss applies the LM head to answer positions only; it must equal the model's own loss."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

from clinical_ner.approaches.seq2seq.module import answer_loss, shareable_prefix, shared_prefix_length


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    input_ids = torch.randint(3, vocab, (3, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 9:] = 0  # right padding
    labels = input_ids.clone()
    labels[0, :7] = labels[1, :4] = labels[2, :5] = -100  # prompts of different lengths
    labels[attention_mask == 0] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _model(tiny_llama, lora: bool) -> torch.nn.Module:
    """A tiny tied-embedding causal Llama, with LoRA adapters (non-zero B, so they change the output) or not."""
    model = tiny_llama(LlamaForCausalLM, seed=1, vocab_size=97, pad_token_id=None, tie_word_embeddings=True)
    if lora:
        model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        )
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param)
    return model


def _same_loss_and_gradients(model, reference, ours, atol: float) -> None:
    """`reference()` and `ours()` (losses of `model`) agree, and so do the gradients they leave."""
    expected_loss = reference()
    expected_loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    loss = ours()
    loss.backward()
    assert torch.allclose(loss, expected_loss, atol=1e-6)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, expected[name], atol=atol), name


@pytest.mark.parametrize("lora", [False, True])
def test_answer_loss_and_gradients_equal_the_models_own(tiny_llama, lora):
    model = _model(tiny_llama, lora)
    batch = _batch(model.config.vocab_size)
    _same_loss_and_gradients(model, lambda: model(**batch).loss, lambda: answer_loss(model, batch), 1e-6)


def test_the_lm_head_sees_only_the_labelled_positions(tiny_llama):
    model = tiny_llama(LlamaForCausalLM, seed=1, vocab_size=97, pad_token_id=None)
    batch = _batch(model.config.vocab_size)
    rows = []  # what the head projects: a [positions, hidden] matrix, no batch x sequence grid
    model.lm_head.register_forward_hook(lambda m, args, out: rows.append(tuple(args[0].shape)))
    answer_loss(model, batch)
    labelled = int((batch["labels"][:, 1:] != -100).sum())  # after the causal shift
    assert rows == [(labelled, model.config.hidden_size)]
    assert labelled < batch["input_ids"].numel() // 2  # prompts and padding are most positions here


def _shared_batch(vocab: int, shared: int = 6) -> dict[str, torch.Tensor]:
    """Three right-padded rows that start with the same `shared` tokens (the instruction every prompt shares)."""
    batch = _batch(vocab)
    batch["input_ids"][:, :shared] = batch["input_ids"][0, :shared]
    batch["labels"][:, :shared] = -100
    return batch


def test_the_shared_prefix_is_the_common_real_tokens_short_of_each_rows_last():
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 1, 0], [5, 6, 7, 8, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert shared_prefix_length(ids, mask) == 3
    # a row that is all prefix keeps its last token for itself
    assert shared_prefix_length(ids[[0, 0]], mask[[0, 0]]) == 4
    # padding never counts as shared, even where the padding ids agree
    short = torch.tensor([[5, 6, 0, 0], [5, 6, 0, 0]])
    assert shared_prefix_length(short, torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0]])) == 1


@pytest.mark.parametrize("lora", [False, True])
def test_a_shared_prefix_run_once_gives_the_same_loss_and_gradients(tiny_llama, lora):
    model = _model(tiny_llama, lora)
    batch = _shared_batch(model.config.vocab_size)
    shared = shareable_prefix(model, batch)
    assert shared == 6
    rows = []  # the decoder's first layer sees the prefix once, then every row's own tokens
    layer = (model.get_base_model() if lora else model).model.layers[0]
    layer.register_forward_hook(lambda m, args, out: rows.append(tuple(args[0].shape[:2])))
    _same_loss_and_gradients(
        model, lambda: answer_loss(model, batch), lambda: answer_loss(model, batch, shared), 1e-5
    )
    assert rows == [(3, 12), (1, 6), (3, 12 - 6)]


def test_gradient_checkpointing_turns_prefix_sharing_off(tiny_llama):
    model = tiny_llama(LlamaForCausalLM, seed=1, vocab_size=97, pad_token_id=None)
    batch = _shared_batch(model.config.vocab_size)
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    assert shareable_prefix(model, batch) == 0
    one_row = {key: value[:1] for key, value in batch.items()}
    (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    assert shareable_prefix(model, one_row) == 0
