import pytest

from nanogpt.errors import UserError
from nanogpt.tokenizer import CharTokenizer, GPT2Tokenizer, compare_tokenizers, tokenizer_from_dict


def test_char_tokenizer_round_trips_and_travels_as_a_dict(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    assert tok.vocab_size == 65 and tok.chars[0] == "\n"
    ids = tok.encode(shakespeare[:5000])
    assert tok.decode(ids) == shakespeare[:5000]
    again = tokenizer_from_dict(tok.to_dict())
    assert again.chars == tok.chars and again.encode("hi there") == tok.encode("hi there")


def test_unknown_characters_give_one_clear_error():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(UserError) as e:
        tok.encode("a cab é€é")
    msg = str(e.value)
    assert "2 character(s)" in msg and "'é'" in msg and "'€'" in msg and "\n" not in msg


def test_gpt2_bpe_works_offline(shakespeare):
    tok = GPT2Tokenizer()
    assert tok.vocab_size == 50257
    assert tok.encode("hi there") == [5303, 612]
    ids = tok.encode(shakespeare)
    assert tok.decode(ids) == shakespeare
    assert len(ids) == 338_025  # nanoGPT's shakespeare prepare.py: 301,966 + 36,059 tokens
    assert tokenizer_from_dict(tok.to_dict()).encode("hi there") == [5303, 612]


def test_tokenizer_trade_off_is_reported(shakespeare):
    rows = {r["tokenizer"]: r for r in compare_tokenizers(shakespeare)}
    assert rows["char"]["vocab_size"] == 65 and rows["char"]["tokens"] == len(shakespeare)
    assert rows["gpt2"]["vocab_size"] == 50257 and rows["gpt2"]["tokens"] == 338_025
    assert rows["gpt2"]["chars_per_token"] > 3
