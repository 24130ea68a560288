"""Batched greedy generation with KV cache and left padding, per-sequence stopping, and (optionally) a logits
processor that constrains every answer to the schema of generative/grammar.py.

Constrained decoding is hand-written: no maintained grammar library is installed here for transformers 5.x, and
the schema needs copy-from-input constraints that a context-free grammar does not express anyway. At each step,
for each row, the allowed tokens are found by walking the vocabulary's byte trie and the row's automaton together
(only the bytes the automaton allows are followed, so the walk is small); when the token budget comes within
`SpanGrammar.finish_bytes` of its end, only the shortest way to a closed array is allowed, so the answer is a
complete array within `max_new_tokens` (for any budget of at least 3 tokens). `entity_bias` is subtracted from
the logits of every token that closes the array (`]`, or `[]`, `}]` where the vocabulary has them), which favours
writing one more entity: a small model trained on mostly empty answers underrates them (a decoding parameter,
chosen on dev).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedTokenizerBase

from clinical_ner.data.batching import PadCollator, eval_batches
from clinical_ner.generative.grammar import DONE, START, SpanGrammar, State
from clinical_ner.generative.vocab import TrieNode, build_trie, token_bytes
from clinical_ner.tasks.tokencls_inference import autocast_for


class TokenVocab:
    """A tokenizer's token bytes and their trie, built once per tokenizer (the walk needs both)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.pieces = token_bytes(tokenizer)
        self.trie = build_trie(self.pieces)


def allowed_tokens(grammar: SpanGrammar, trie: TrieNode, state: State, finishing: bool) -> dict[int, State]:
    """Every token whose bytes the automaton accepts from `state`, with the state after it."""
    found: dict[int, State] = {}
    stack = [(trie, state, True)]
    while stack:
        node, current, is_root = stack.pop()
        if not is_root:
            for token_id in node.ids:
                found[token_id] = current
        # finishing holds for every byte of a token: `},{"` must not reopen an entity when the budget is out
        for byte, following in grammar.successors(current, finishing):
            child = node.children.get(byte)
            if child is not None:
                stack.append((child, following, False))
    return found


class SchemaLogitsProcessor(LogitsProcessor):
    """Masks, row by row, every token that would leave the schema (or, once `]` is written, every non-stop
    token). Rows are the batch's prompts in order; `prompt_length` is the padded prompt width."""

    def __init__(
        self,
        vocab: TokenVocab,
        texts: Sequence[str],
        types: Sequence[str],
        stop_ids: Sequence[int],
        prompt_length: int,
        max_new_tokens: int,
        entity_bias: float = 0.0,
    ) -> None:
        self.vocab = vocab
        self.entity_bias = entity_bias
        self.grammars = [SpanGrammar(text, types) for text in texts]
        self.stop_ids = list(stop_ids)
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.states: list[State] = [START] * len(texts)
        self.options: list[dict[int, State]] = [{} for _ in texts]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_length
        if step > 0:
            for row, token in enumerate(input_ids[:, -1].tolist()):
                # a finished row is fed padding: it stays done
                self.states[row] = self.options[row].get(token, DONE if self.states[row] == DONE else None)
        left = self.max_new_tokens - step
        mask = torch.full_like(scores, float("-inf"))
        for row, grammar in enumerate(self.grammars):
            state = self.states[row]
            if state is None or state == DONE:
                self.options[row] = {}
                mask[row, self.stop_ids] = 0.0
                continue
            # `left - 1`: the stop token needs a step of its own after `]`
            options = allowed_tokens(grammar, self.vocab.trie, state, left - 1 <= grammar.finish_bytes)
            self.options[row] = options
            mask[row, list(options)] = 0.0
            if self.entity_bias:
                closing = [token for token, after in options.items() if after == DONE]
                mask[row, closing] = -self.entity_bias
        return scores + mask


ProcessorFactory = Callable[[list[int], int], LogitsProcessor]


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    batch_size: int,
    precision: str = "32",
    processor: ProcessorFactory | None = None,
) -> list[list[int]]:
    """Greedy answers (token ids, stop token excluded) for every prompt, in prompt order.

    Prompts are batched longest first (similar lengths share a batch), left-padded, and decoded with the KV
    cache; each row stops at its first stop token. `processor(indices, padded_width)` builds a logits processor
    for the batch holding prompts `indices`.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )
    answers: list[list[int]] = [[] for _ in prompts]
    collate = PadCollator(pad_id, side="left")
    stops = set(stop_ids)
    for indices in eval_batches([len(p) for p in prompts], batch_size):
        batch = collate([{"input_ids": prompts[i], "index": i} for i in indices])
        ids, mask = batch["input_ids"], batch["attention_mask"]
        processors = LogitsProcessorList([processor(indices, ids.shape[1])] if processor else [])
        with autocast_for(precision, device):
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                generation_config=config,
                logits_processor=processors,
            )
        for row, index in enumerate(indices):
            tokens = out[row, ids.shape[1] :].tolist()
            cut = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
            answers[index] = tokens[:cut]
    model.train(was_training)
    return answers


def schema_processor(
    vocab: TokenVocab,
    texts: Sequence[str],
    types: Sequence[str],
    stop_ids: Sequence[int],
    max_new_tokens: int,
    entity_bias: float = 0.0,
) -> ProcessorFactory:
    """A factory for `generate`: a `SchemaLogitsProcessor` over the batch's unit texts."""

    def make(indices: list[int], width: int) -> LogitsProcessor:
        return SchemaLogitsProcessor(
            vocab, [texts[i] for i in indices], types, stop_ids, width, max_new_tokens, entity_bias
        )

    return make
