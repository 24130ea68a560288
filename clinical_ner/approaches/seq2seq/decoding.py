"""Batched greedy generation with KV cache and left padding, per-sequence stopping, and (optionally) a
constraint that keeps every answer inside the schema of approaches/seq2seq/grammar.py.

The loop is written by hand (continuous batching) rather than through `model.generate`: a row that stops leaves
the batch and its KV cache at once, and waiting prompts are prefilled and merged into the running batch whenever
it falls to half its size. Most answers are a short `[]`, so a static batch would spend most of its steps on the
one long answer while the other rows idle (`bench_seq2seq.py` compares this with `generate` called one prompt at
a time, as the original did, and with our loop at batch 1).

Constrained decoding is hand-written too: no maintained grammar library is installed here for transformers 5.x, and
the schema needs copy-from-input constraints that a context-free grammar does not express anyway. At each step,
for each row, the allowed tokens are found by walking the vocabulary's byte trie and the row's automaton together
(only the bytes the automaton allows are followed, so the walk is small); when the token budget comes within
`SpanGrammar.finish_bytes` of its end, only the shortest way to a closed array is allowed, so the answer is a
complete array within `max_new_tokens` (for any budget of at least 3 tokens). `entity_bias` favours entities: it
is subtracted from the logits of every token that closes the array (`]`, or `[]`, `}]` where the vocabulary has
them) and added to those of every token that opens an `inline` marker or writes a `words` label's `B`
(`entity_sign`): a small model trained on mostly empty answers underrates them (a decoding parameter, chosen on
dev).

The automaton comes from the answer format (approaches/seq2seq/formats/): the JSON list's `SpanGrammar`, or a copy
of the input with typed markers (`inline`) or labels (`words`). With `jump_forward`, a row whose automaton allows
exactly one continuation after the chosen token (the rest of a word being copied, a marker's fixed bytes) gets
that whole forced run, tokenized as the tokenizer writes it, fed in one forward pass instead of one step per
token (jump-forward decoding, as structured-generation engines do): the text is the same, the steps are fewer.

With `draft_tokens`, a copy-format row also feeds a draft: what it would write next if every choice went as the
grammar guesses (its `guess`: copy the text, label each word `O`, ...), each choice followed by its forced run as
jump-forward feeds it. One forward pass scores every draft position; the row keeps the choices that greedy
constrained decoding makes itself (checked as `restrict` would: the first of the highest allowed scores) and
goes on from the first choice it does not (speculative decoding with the input text as the draft model, exact
for greedy decoding). A sentence without mentions is answered in about one pass instead of one per word; the
rejected draft tokens are masked out of the KV cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from clinical_ner.approaches.seq2seq.formats import AnswerFormat, answer_format
from clinical_ner.approaches.seq2seq.formats.base import Grammar
from clinical_ner.approaches.seq2seq.grammar import DONE, START, State
from clinical_ner.approaches.seq2seq.vocab import TrieNode, build_trie, token_bytes
from clinical_ner.data.batching import PadCollator
from clinical_ner.models.precision import autocast_for


class TokenVocab:
    """A tokenizer's token bytes and their trie, built once per tokenizer (the walk needs both)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.pieces = token_bytes(tokenizer)
        self.trie = build_trie(self.pieces)

    def encode(self, data: bytes) -> list[int]:
        """Tokens that write exactly `data`: the tokenizer's own (what training targets look like) when they do,
        else the longest vocabulary match at each position (SentencePiece adds a space before a text, for one)."""
        try:
            ids = self.tokenizer(data.decode("utf-8"), add_special_tokens=False)["input_ids"]
        except UnicodeDecodeError:
            ids = []
        if ids and b"".join(self.pieces[i] or b"\0" for i in ids) == data:
            return ids
        out, position = [], 0
        while position < len(data):
            node, best, length = self.trie, None, 0
            for offset in range(position, len(data)):
                node = node.children.get(data[offset])
                if node is None:
                    break
                if node.ids:
                    best, length = node.ids[0], offset + 1 - position
            if best is None:
                return []  # some byte has no token: no jump
            out.append(best)
            position += length
        return out


def allowed_tokens(grammar: Grammar, trie: TrieNode, state: State, finishing: bool) -> dict[int, State]:
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


class SchemaConstraint:
    """Automaton states of every prompt: `restrict` masks, line by line, every token that would leave the
    schema (or, once `]` is written, every non-stop token); `advance` moves the lines along the tokens chosen.
    Rows are prompt indices; `texts[row]` is the unit text that prompt asks about."""

    def __init__(
        self,
        vocab: TokenVocab,
        texts: Sequence[str],
        types: Sequence[str],
        stop_ids: Sequence[int],
        max_new_tokens: int,
        entity_bias: float = 0.0,
        whole_words: bool = False,
        earliest: bool = False,
        answer: AnswerFormat | None = None,
        jump_forward: bool = False,
        draft_tokens: int = 0,
    ) -> None:
        self.vocab = vocab
        self.answer = answer or answer_format("json")
        self.jump_forward = jump_forward
        # copy drafts need a format whose answer is a copy of the input (its grammar's `guess`)
        self.draft_tokens = draft_tokens if self.answer.copies_input else 0
        # each row's last draft: (index in the draft, token chosen there, state after its run) per choice
        self.drafted: dict[int, list[tuple[int, int, State]]] = {}
        self.whole_words = whole_words
        self.earliest = earliest  # SpanGrammar: repeated texts take their earliest occurrence
        self.texts = texts
        self.types = list(types)
        self.entity_bias = entity_bias
        self.grammars: dict[int, Grammar] = {}  # built when a prompt enters the batch
        self.stop_ids = list(stop_ids)
        self.max_new_tokens = max_new_tokens
        self.states: dict[int, State | None] = {}
        self.options: dict[int, dict[int, State]] = {}

    def restrict(self, rows: Sequence[int], steps: Sequence[int], scores: torch.Tensor) -> torch.Tensor:
        """`scores` (one line per row in `rows`, `steps` tokens already written) with disallowed tokens -inf."""
        # (line, token) and (line, token, bias): gathered first, one indexed write each (on a GPU, a write per
        # row would copy and sync per row)
        allowed: tuple[list[int], list[int]] = ([], [])
        biased: tuple[list[int], list[int], list[float]] = ([], [], [])
        for line, (row, step) in enumerate(zip(rows, steps, strict=True)):
            if row not in self.grammars:
                self.grammars[row] = self.answer.grammar(
                    self.texts[row], self.types, self.whole_words, self.earliest
                )
            state, grammar = self.states.get(row, START), self.grammars[row]
            if state is None or state == DONE:
                self.options[row] = {}
                allowed[0].extend([line] * len(self.stop_ids))
                allowed[1].extend(self.stop_ids)
                continue
            # `- 1`: the stop token needs a step of its own after `]`
            finishing = self.max_new_tokens - step - 1 <= grammar.reserve(state)
            options = allowed_tokens(grammar, self.vocab.trie, state, finishing)
            self.options[row] = options
            allowed[0].extend([line] * len(options))
            allowed[1].extend(options)
            for token, delta in self._entity_deltas(grammar, state, options).items():
                biased[0].append(line)
                biased[1].append(token)
                biased[2].append(delta)
        mask = torch.full_like(scores, float("-inf"))
        mask[torch.tensor(allowed[0]), torch.tensor(allowed[1])] = 0.0
        if biased[0]:
            mask[torch.tensor(biased[0]), torch.tensor(biased[1])] = torch.tensor(biased[2], dtype=mask.dtype)
        return scores + mask

    def _entity_deltas(self, grammar: Grammar, state: State, options: dict[int, State]) -> dict[int, float]:
        """`entity_bias` per allowed token that its grammar biases (`entity_sign`): a malus on closing the JSON
        list, a bonus on opening a mention."""
        if not self.entity_bias:
            return {}
        signs = {token: grammar.entity_sign(state, after) for token, after in options.items()}
        return {token: sign * self.entity_bias for token, sign in signs.items() if sign}

    def advance(self, rows: Sequence[int], tokens: Sequence[int]) -> None:
        """Move each row's automaton along the token it was given."""
        for row, token in zip(rows, tokens, strict=True):
            self.states[row] = self.options[row].get(token)

    def jump(self, row: int, token: int, room: int) -> list[int]:
        """What `row` feeds after choosing `token` (already `advance`d): the token alone, or, with jump-forward,
        its bytes and the forced run after them (the only continuation the automaton allows), as at most `room`
        tokens; the row's state moves to the end of the run."""
        state = self.states.get(row)
        run, after = self._jump_run(self.grammars[row], token, state, room)
        self.states[row] = after
        return run

    def _jump_run(
        self, grammar: Grammar, token: int, state: State | None, room: int
    ) -> tuple[list[int], State]:
        """(tokens fed, state after them) once `token` is chosen and the automaton is in `state`."""
        if not self.jump_forward or state is None or state == DONE or room < 2:
            return [token], state
        forced, states = bytearray(), [state]
        while states[-1] != DONE:
            options = grammar.successors(states[-1], finishing=False)
            if len(options) != 1:
                break
            forced.append(options[0][0])
            states.append(options[0][1])
        # a run stops before trailing white space: BPE words carry their leading space, so leaving it to the
        # next step keeps the tokenization of the following word the one the model was trained on
        while forced and forced[-1] in b" \t\r\n" and states[-1] != DONE:
            forced.pop()
            states.pop()
        if not forced:
            return [token], state
        run = self.vocab.encode((self.vocab.pieces[token] or b"") + bytes(forced))[:room]
        return (run, states[-1]) if len(run) >= 2 else ([token], state)

    def draft(self, row: int, room: int) -> list[int]:
        """A copy draft for `row` (`room`: tokens it may still write): at most `draft_tokens` tokens of what the
        row feeds if every choice goes as the grammar guesses (`guess`: copy the text, label each word `O`, ...),
        each choice being the next token of that text as the tokenizer writes it, followed, with
        jump-forward, by its forced run, exactly as `jump` would feed it, and by a stop token where the guess
        completes the answer. `accept` keeps the choices the model makes itself."""
        limit, state = min(self.draft_tokens, room - 1), self.states.get(row)  # a token left after it
        if limit < 1 or state is None or state == DONE:
            return []
        grammar, data, states = self.grammars[row], bytearray(), [state]
        while len(data) < 8 * limit:  # 8 bytes a token is more than Spanish text takes: the draft fills up
            guessed = grammar.guess(states[-1])
            if guessed is None:
                break
            data.append(guessed[0])
            states.append(guessed[1])
        at = {states[i]: i for i in range(len(states))}  # states are unique along a copy: byte offset of each
        fed: list[int] = []
        choices: list[tuple[int, int, State]] = []
        tokens, position = self.vocab.encode(bytes(data)), 0
        while tokens and position < len(data):
            token = tokens[0]
            chosen = states[position + len(self.vocab.pieces[token] or b"")]
            run, after = self._jump_run(grammar, token, chosen, room - len(fed))
            if len(fed) + len(run) > limit or after not in at:
                break  # past the budget or the guessed text (a forced run beyond it)
            choices.append((len(fed), token, after))
            fed += run
            # the next choice: the guess's tokens on from the run's end (re-encoded where the run cut them)
            position = at[after]
            same = tokens[: len(run)] == run
            tokens = tokens[len(run) :] if same else self.vocab.encode(bytes(data[position:]))
        if position == len(data) and states[-1] == DONE and choices and len(fed) < limit:
            choices.append((len(fed), self.stop_ids[0], DONE))  # the answer is complete: guess its end too
            fed.append(self.stop_ids[0])
        self.drafted[row] = choices
        return fed

    def accept(self, row: int, draft: Sequence[int], logits: torch.Tensor, written: int) -> int:
        """How many leading tokens of `row`'s draft greedy constrained decoding feeds itself: `logits[j]` are the
        scores after the row's `written` tokens and `draft[:j]`. Each guessed choice is checked as `restrict`
        and argmax would make it (the first of the highest allowed scores in vocabulary order); the row's state
        moves past the kept ones, and the next step decodes from `logits[count]` as usual, so the answer is the
        one step-by-step decoding writes."""
        grammar, state, count = self.grammars[row], self.states[row], 0
        best = logits.argmax(-1).tolist()
        choices = self.drafted[row]
        for number, (index, token, after) in enumerate(choices):
            finishing = self.max_new_tokens - (written + index) - 1 <= grammar.reserve(state)
            # the favourite leaves the schema, the budget narrows it, or the bias may move the choice
            if best[index] != token or finishing or self.entity_bias:
                if state == DONE:  # only a stop token may follow, as in `restrict`
                    allowed = dict.fromkeys(self.stop_ids, DONE)
                else:
                    allowed = allowed_tokens(grammar, self.vocab.trie, state, finishing)
                options = sorted(allowed)
                scores = logits[index, options]
                deltas = self._entity_deltas(grammar, state, allowed)  # none from DONE: every sign is 0
                if deltas:
                    scores = scores + torch.tensor([deltas.get(t, 0.0) for t in options], dtype=scores.dtype)
                if options[int(scores.argmax())] != token:
                    break
            state = after
            count = choices[number + 1][0] if number + 1 < len(choices) else len(draft)
        self.states[row] = state
        return count


class _Prefix:
    """The keys and values of the prompt prefix every prompt shares (chat template, instruction), computed once
    per `generate` call: each entering batch copies them instead of recomputing them for every row."""

    def __init__(self, model: torch.nn.Module, ids: Sequence[int], device: torch.device) -> None:
        self.length = len(ids)
        self.cache = DynamicCache(config=model.config)
        model(
            input_ids=torch.tensor([list(ids)], device=device),
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )

    def for_rows(self, model: torch.nn.Module, rows: int) -> DynamicCache:
        """A cache holding the prefix once per row."""
        cache = DynamicCache(config=model.config)
        for index, layer in enumerate(self.cache.layers):
            cache.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
        return cache


def shared_prompt_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Leading tokens every prompt starts with, short of each prompt's last token (each row needs one to
    prefill)."""
    first, length = prompts[0], min(map(len, prompts)) - 1
    for column in range(max(length, 0)):
        token = first[column]
        if any(prompt[column] != token for prompt in prompts):
            return column
    return max(length, 0)


class _Batch:
    """The running batch: its prompts (rows), KV cache, attention mask, next positions and last logits. With a
    `prefix`, `ids` are the prompts past it and the rows' columns are [prefix | left padding | rest]."""

    def __init__(
        self,
        model: torch.nn.Module,
        ids: torch.Tensor,
        mask: torch.Tensor,
        rows: list[int],
        prefix: _Prefix | None = None,
    ) -> None:
        self.model, self.rows, self.mask = model, rows, mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        if prefix is None:
            self.cache = DynamicCache(config=model.config)
        else:
            self.cache = prefix.for_rows(model, len(rows))
            self.mask = torch.cat([mask.new_ones(len(rows), prefix.length), mask], dim=1)
            positions = positions + prefix.length
        self.next_position = positions[:, -1:] + 1
        self.logits = self._forward(ids, positions, logits_to_keep=1)[:, -1]

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, **kwargs) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=self.mask,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            **kwargs,
        )
        return out.logits

    def keep(self, lines: list[int]) -> None:
        """Drop every line not in `lines` (and the cache columns no remaining line attends to)."""
        if len(lines) == len(self.rows):
            return
        index = torch.tensor(lines, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.next_position = self.mask[index], self.next_position[index]
        self.logits = self.logits[index]
        self.rows = [self.rows[line] for line in lines]
        self._compact()

    def _compact(self) -> None:
        """Drop the cache columns no line attends to (left padding, rejected drafts)."""
        used = self.mask.any(0)
        if bool(used.all()):
            return
        self.mask = self.mask[:, used]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, used], layer.values[:, :, used]

    def _append(self, runs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids of a run per line, their positions and lengths; the mask grows by their columns
        (the padding columns masked)."""
        width = max(map(len, runs))
        ids = self.mask.new_zeros(len(runs), width)
        added = self.mask.new_zeros(len(runs), width)
        for line, run in enumerate(runs):
            ids[line, : len(run)] = torch.tensor(run, device=ids.device)
            added[line, : len(run)] = 1
        self.mask = torch.cat([self.mask, added], dim=1)
        positions = self.next_position + torch.arange(width, device=ids.device)
        return ids, positions, torch.tensor([len(run) for run in runs], device=ids.device)

    def feed(self, runs: list[list[int]]) -> None:
        """Feed a run of tokens per line in one forward pass (right-padded; the padding columns stay masked)."""
        ids, positions, lengths = self._append(runs)
        # the LM head on each line's last run token only (not on `width` positions of a 49k-128k vocabulary)
        self.logits = self._forward(ids, positions, logits_to_keep=(lengths - 1)[:, None])[:, -1]
        self.next_position = self.next_position + lengths[:, None]

    _ends: torch.Tensor  # set by `verify`: past each line's last fed column

    def verify(self, runs: list[list[int]], drafts: list[list[int]]) -> list[torch.Tensor]:
        """Feed each line's run and draft in one forward pass; per line, the scores after the run's last token
        and after each draft token (the LM head projects those positions only). `settle` follows."""
        fed = [run + draft for run, draft in zip(runs, drafts, strict=True)]
        self._ends = self.mask.shape[1] + torch.tensor([len(tokens) for tokens in fed])
        ids, positions, lengths = self._append(fed)
        scored = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        for line, (run, draft) in enumerate(zip(runs, drafts, strict=True)):
            scored[line, len(run) - 1 : len(run) + len(draft)] = True
        self.next_position = self.next_position + lengths[:, None]
        # a boolean logits_to_keep gives the scored positions flattened in line order
        return list(self._forward(ids, positions, logits_to_keep=scored).split([len(d) + 1 for d in drafts]))

    def settle(self, scores: list[torch.Tensor], kept: list[int], drafted: list[int]) -> None:
        """After `verify`: each line keeps `kept[line]` of its `drafted[line]` draft tokens; the rest are masked
        out (their columns dropped once no line uses them), and the line's next scores follow its last kept
        token."""
        for line, (count, size) in enumerate(zip(kept, drafted, strict=True)):
            end = int(self._ends[line])
            self.mask[line, end - (size - count) : end] = 0
        rejected = torch.tensor([size - count for count, size in zip(kept, drafted, strict=True)])
        self.next_position = self.next_position - rejected.to(self.next_position.device)[:, None]
        self.logits = torch.stack(
            [line_scores[count] for line_scores, count in zip(scores, kept, strict=True)]
        )
        self._compact()

    def step(self, tokens: torch.Tensor) -> None:
        """Feed one token per line."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(self.rows), 1)], dim=1)
        self.logits = self._forward(tokens[:, None], self.next_position)[:, -1]
        self.next_position = self.next_position + 1

    def merge(self, other: _Batch) -> None:
        """Append another batch's lines, left-padding the shorter cache so the columns line up."""
        width = max(self.mask.shape[1], other.mask.shape[1])

        def pad(tensor: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - tensor.shape[dim]
            if not missing:
                return tensor
            shape = list(tensor.shape)
            shape[dim] = missing
            return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)

        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, 2), pad(theirs.keys, 2)])
            mine.values = torch.cat([pad(mine.values, 2), pad(theirs.values, 2)])
        self.mask = torch.cat([pad(self.mask, 1), pad(other.mask, 1)])
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.logits = torch.cat([self.logits, other.logits])
        self.rows = self.rows + other.rows


@torch.inference_mode()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    batch_size: int,
    precision: str = "32",
    constraint: SchemaConstraint | None = None,
    on_done: Callable[[int], object] | None = None,
    share_prefix: bool = False,
) -> list[list[int]]:
    """Greedy answers (token ids, stop token excluded) for every prompt, in prompt order; `on_done(n)` hears
    of every n answers finished (a progress bar's `update`).

    Continuous batching with the KV cache: at most `batch_size` prompts decode together; prompts enter longest
    first, left-padded, whenever the batch falls to half its size; a row leaves at its first stop token or after
    `max_new_tokens` tokens. `constraint` (rows = prompt indices) restricts every step to the schema.
    `share_prefix`: the leading tokens all prompts share are prefilled once (`_Prefix`), not once per prompt: the
    same answers up to float rounding, for the prompts' own tokens' prefill only.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    stops = set(stop_ids)
    answers: list[list[int]] = [[] for _ in prompts]
    waiting = deque(sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True))
    collate = PadCollator(pad_id, side="left")
    batch: _Batch | None = None
    shared = shared_prompt_prefix(prompts) if share_prefix and len(prompts) > 1 else 0
    drafting = constraint is not None and constraint.draft_tokens > 0
    with autocast_for(precision, device):
        prefix = _Prefix(model, prompts[0][:shared], device) if shared else None
        while waiting or batch is not None:
            if waiting and (batch is None or len(batch.rows) <= batch_size // 2):
                take = [
                    waiting.popleft()
                    for _ in range(min(batch_size - len(batch.rows if batch else []), len(waiting)))
                ]
                padded = collate([{"input_ids": prompts[i][shared:], "index": i} for i in take])
                ids, mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
                entering = _Batch(model, ids, mask, take, prefix)
                if batch is None:
                    batch = entering
                else:
                    batch.merge(entering)
            logits = batch.logits
            if constraint is not None:
                logits = constraint.restrict(batch.rows, [len(answers[r]) for r in batch.rows], logits)
            tokens = logits.argmax(-1)
            chosen = tokens.tolist()
            if constraint is not None:
                constraint.advance(batch.rows, chosen)
            going, runs, drafts = [], [], []
            for line, (row, token) in enumerate(zip(batch.rows, chosen, strict=True)):
                if token in stops:
                    continue
                room = max_new_tokens - len(answers[row])
                run = [token] if constraint is None else constraint.jump(row, token, room)
                answers[row].extend(run)
                if len(answers[row]) < max_new_tokens:
                    going.append(line)
                    runs.append(run)
                    drafts.append(constraint.draft(row, room - len(run)) if drafting else [])
            if on_done is not None and len(going) < len(chosen):
                on_done(len(chosen) - len(going))
            if not going:
                batch = None
                continue
            batch.keep(going)
            if any(drafts):
                scores = batch.verify(runs, drafts)
                kept, finished = [], []
                for line, (row, draft) in enumerate(zip(batch.rows, drafts, strict=True)):
                    kept.append(
                        constraint.accept(row, draft, scores[line], len(answers[row])) if draft else 0
                    )
                    written = draft[: kept[-1]]
                    if written and written[-1] in stops:  # the guessed stop token was the model's choice
                        written = written[:-1]
                        finished.append(line)
                    answers[row].extend(written)
                batch.settle(scores, kept, [len(draft) for draft in drafts])
                if finished:
                    if on_done is not None:
                        on_done(len(finished))
                    going = [line for line in range(len(batch.rows)) if line not in finished]
                    if not going:
                        batch = None
                        continue
                    batch.keep(going)
            elif any(len(run) > 1 for run in runs):
                batch.feed(runs)
            else:
                batch.step(tokens[torch.tensor(going, device=tokens.device)])
    model.train(was_training)
    return answers
