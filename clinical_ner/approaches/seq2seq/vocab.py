"""What each token of a vocabulary writes, as bytes, and a byte trie over them (for constrained decoding)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

_BYTE_FALLBACK_LEN = 6  # "<0xNN>"


def _byte_level_table() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (character -> byte)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    )
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True for byte-level BPE (Llama 3.x), False for SentencePiece-style (Llama 2)."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    return "ByteLevel" in repr(decoder)


def token_bytes(tokenizer: PreTrainedTokenizerBase) -> list[bytes | None]:
    """The bytes each token id writes into decoded text; None for special tokens (BOS, EOS, chat markers)."""
    special = set(tokenizer.all_special_ids)
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if added.special:
            special.add(token_id)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    table = _byte_level_table() if is_byte_level(tokenizer) else None
    result: list[bytes | None] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            result.append(None)
        elif table is not None:
            result.append(bytes(table[c] for c in piece) if all(c in table for c in piece) else None)
        elif len(piece) == _BYTE_FALLBACK_LEN and piece.startswith("<0x") and piece.endswith(">"):
            result.append(bytes([int(piece[3:5], 16)]))
        else:
            result.append(piece.replace("▁", " ").encode("utf-8"))
    return result


@dataclass
class TrieNode:
    """Tokens whose bytes end here (`ids`) and the children by next byte."""

    ids: list[int] = field(default_factory=list)
    children: dict[int, TrieNode] = field(default_factory=dict)


def build_trie(pieces: list[bytes | None]) -> TrieNode:
    """A byte trie over every non-special, non-empty token."""
    root = TrieNode()
    for token_id, data in enumerate(pieces):
        if not data:
            continue
        node = root
        for byte in data:
            node = node.children.setdefault(byte, TrieNode())
        node.ids.append(token_id)
    return root
