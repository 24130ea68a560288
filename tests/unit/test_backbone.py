"""The attention switch changes behaviour, with and without padding, under sdpa and eager."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForTokenClassification

from clinical_ner.models.attention import set_attention_direction
from clinical_ner.models.backbone import kv_heads_at, load_token_classifier


@pytest.fixture
def tiny_model(tiny_llama):
    def make(attn: str, bidirectional: bool) -> LlamaForTokenClassification:
        model = tiny_llama(LlamaForTokenClassification, vocab_size=50, num_labels=3, attn_implementation=attn)
        set_attention_direction(model.eval(), bidirectional)
        return model

    return make


def logits(model, ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_token0_sees_token3_only_when_bidirectional(tiny_model, attn, padded, bidirectional):
    model = tiny_model(attn, bidirectional)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]]) if padded else torch.ones_like(ids)
    if not padded:
        ids[1, 4:] = torch.tensor([15, 16])
    changed = ids.clone()
    changed[:, 3] = 20
    delta = (logits(model, ids, mask)[:, 0] - logits(model, changed, mask)[:, 0]).abs().max().item()
    if bidirectional:
        assert delta > 1e-4
    else:
        assert delta < 1e-6


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_is_invisible_when_bidirectional(tiny_model, attn):
    model = tiny_model(attn, bidirectional=True)
    ids = torch.tensor([[5, 6, 7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    other = ids.clone()
    other[0, 4:] = torch.tensor([30, 31])  # junk under the padding mask
    out_a, out_b = logits(model, ids, mask), logits(model, other, mask)
    assert torch.allclose(out_a[0, :4], out_b[0, :4], atol=1e-6)
    # and a padded sequence gives the same real-token outputs as the unpadded one alone
    alone = logits(model, ids[:, :4], mask[:, :4])
    assert torch.allclose(out_a[0, :4], alone[0], atol=1e-5)


def test_direction_survives_save_and_reload(tiny_model, tmp_path):
    model = tiny_model("sdpa", bidirectional=True)
    model.save_pretrained(tmp_path)
    reloaded = load_token_classifier(str(tmp_path)).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])  # unpadded: the case where sdpa would silently go causal
    mask = torch.ones_like(ids)
    assert torch.equal(logits(model, ids, mask), logits(reloaded, ids, mask))
    assert all(not m.is_causal for m in reloaded.modules() if "is_causal" in vars(m))


def test_kv_heads_keep_family_ratio():
    assert kv_heads_at(4, 32, 32) == 4  # Llama 2: no grouping
    assert kv_heads_at(4, 32, 8) == 1  # Llama 3: 4 query heads per kv head
    assert kv_heads_at(8, 24, 8) == 2  # Llama 3.2: 3 per kv head, rounded to a divisor
