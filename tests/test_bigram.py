import math

import pytest
import torch
import torch.nn.functional as F

from nanogpt.bigram import BigramConfig, CountBigram, NeuralBigram, name_sequences
from nanogpt.data import load_text, split_text
from nanogpt.sample import generate
from nanogpt.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def names():
    words = load_text("names").splitlines()
    stoi = {c: i for i, c in enumerate("." + "".join(sorted(set("".join(words)))))}
    return words, stoi


def test_counts_every_adjacent_pair_with_add_k_smoothing():
    m = CountBigram(3, smoothing=1.0).fit([torch.tensor([0, 1, 1, 2]), [2, 0]])
    assert m.counts.tolist() == [[0, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert torch.allclose(m.probs[0], torch.tensor([1, 2, 1], dtype=torch.float64) / 4)
    assert torch.allclose(m.probs.sum(1), torch.ones(3, dtype=torch.float64))


def test_nll_is_the_mean_minus_log_probability_and_matches_forward_loss():
    m = CountBigram(3, smoothing=0.5).fit([[0, 1, 2, 1, 0, 2, 2]])
    seq = torch.tensor([0, 2, 1, 1, 0])
    expected = -sum(math.log(m.probs[a, b]) for a, b in zip(seq[:-1], seq[1:], strict=True)) / 4
    assert m.nll([seq]) == pytest.approx(expected, abs=1e-12)
    _, loss = m(seq[None, :-1], seq[None, 1:])
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_names_count_bigram_reaches_the_lecture_loss_and_samples_names(names):
    words, stoi = names
    m = CountBigram(27).fit(name_sequences(words, stoi))
    assert m.nll(name_sequences(words, stoi)) == pytest.approx(2.4546, abs=1e-3)  # makemore part 1
    start = torch.full((20, 1), stoi["."])  # 20 names at once, each from the boundary
    out = generate(m, start, 50, generator=torch.Generator().manual_seed(2147483647))
    assert out.shape == (20, 51) and (out[:, 1:] == stoi["."]).any(1).all()  # every name ends
    assert torch.equal(out, generate(m, start, 50, generator=torch.Generator().manual_seed(2147483647)))


def test_count_bigram_samples_through_generate_the_draws_of_its_own_table():
    m = CountBigram(6, smoothing=0.5).fit([[0, 1, 2, 3, 4, 5, 1, 1, 0, 3, 2, 2]])
    g, ix, by_hand = torch.Generator().manual_seed(0), 0, []
    for _ in range(300):  # the lecture's loop: draw from the current character's row of probs
        ix = torch.multinomial(m.probs[ix], 1, generator=g).item()
        by_hand.append(ix)
    out = generate(m, torch.zeros(1, 1, dtype=torch.long), 300, generator=torch.Generator().manual_seed(0))
    assert out[0, 1:].tolist() == by_hand  # the same generator gives the same draws


def test_shakespeare_count_bigram_val_loss_is_about_2_48(shakespeare):
    tok = CharTokenizer.from_text(shakespeare)
    train, val = split_text(torch.tensor(tok.encode(shakespeare)))
    m = CountBigram(tok.vocab_size).fit([train])
    assert m.nll([val]) == pytest.approx(2.48, abs=0.01)


def test_neural_bigram_is_one_hot_times_a_weight_matrix():
    torch.manual_seed(0)
    m = NeuralBigram(BigramConfig(vocab_size=5)).double()
    assert m(torch.tensor([[1]]))[0].abs().sum() == 0  # zeros at init: uniform, loss ln(V)
    with torch.no_grad():
        m.weight.normal_()
    idx = torch.randint(5, (2, 7))
    logits, loss = m(idx, idx)
    assert logits.shape == (2, 7, 5)
    one_hot = F.one_hot(idx, 5).double()  # (B, T, V)
    assert torch.allclose(logits, one_hot @ m.weight, atol=1e-12)


def test_neural_bigram_trained_by_gradient_descent_reaches_the_count_loss(names):
    words, stoi = names
    seqs = name_sequences(words[:2000], stoi)
    xs = torch.cat([s[:-1] for s in seqs])[None]  # (1, N): every pair at once, full batch
    ys = torch.cat([s[1:] for s in seqs])[None]
    count = CountBigram(27, smoothing=0.0).fit(seqs)  # the maximum-likelihood table
    m = NeuralBigram(BigramConfig(27))
    assert m(xs, ys)[1].item() == pytest.approx(math.log(27), abs=1e-6)
    opt = torch.optim.Adam(m.parameters(), lr=1.0)
    for _ in range(60):
        loss = m(xs, ys)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m(xs, ys)[1].item() == pytest.approx(count.nll(seqs), abs=0.01)
