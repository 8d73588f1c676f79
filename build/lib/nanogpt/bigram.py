"""Stage 1: the bigram, twice: by counting pairs, and as a one-layer network trained by gradient descent.

Both predict the next character from the current one alone. Counting gives the best such table
directly (the maximum-likelihood answer, plus smoothing). The neural bigram learns a table of
logits by gradient descent and ends at the same loss: the network is slower here, but it is the
approach that keeps working when the context grows beyond one character (stage 2, stage 3).

Two forms of data, one model:
  running text (Tiny Shakespeare): one long sequence of ids, every adjacent pair counts;
  names: each name is its own sequence "." + name + ".", so the model also learns how names
  start (the pair ".", first letter) and when they stop (last letter, ".").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class BigramConfig:
    """The shape of a bigram: a vocabulary, and a context of one character."""

    vocab_size: int = 65
    block_size: int = 1  # it looks at one character; each position of a (B, T) input is independent


def name_sequences(words: list[str], stoi: dict[str, int], boundary: str = ".") -> list[torch.Tensor]:
    """Each name as the ids of boundary + name + boundary: the form the count model fits names in."""
    return [torch.tensor([stoi[c] for c in boundary + w + boundary]) for w in words]


def pairs(sequences) -> tuple[torch.Tensor, torch.Tensor]:
    """Every adjacent pair of ids within each sequence: (current ids, next ids), both (N,)."""
    seqs = [torch.as_tensor(seq, dtype=torch.long) for seq in sequences]
    return torch.cat([seq[:-1] for seq in seqs]), torch.cat([seq[1:] for seq in seqs])


class CountBigram(nn.Module):
    """Next-character probabilities from counted pairs, with add-k smoothing.

    `counts[a, b]` is how often b followed a. Adding k to every count (k=1 is Laplace smoothing)
    gives unseen pairs a small probability instead of zero, so that no text has infinite loss.
    Not trained by the engine: `fit` counts, and `forward` turns the table into logits so the
    model plugs into the same loss and sampling code as every other stage: nanogpt.sample's
    `generate(model, idx, n, generator=g)` draws from softmax(log p) = p, one character at a time.
    """

    def __init__(self, vocab_size: int, smoothing: float = 1.0):
        super().__init__()
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, not {smoothing}")
        self.config = BigramConfig(vocab_size)
        self.smoothing = smoothing
        self.register_buffer("counts", torch.zeros(vocab_size, vocab_size, dtype=torch.long))

    def fit(self, sequences) -> CountBigram:
        """Add every adjacent pair (a, b) of each id sequence to the counts; returns the model."""
        V = self.config.vocab_size
        a, b = pairs(sequences)
        self.counts += torch.bincount(a * V + b, minlength=V * V).view(V, V)  # pair (a, b) is a*V + b
        return self

    @property
    def probs(self) -> torch.Tensor:
        """P(next = b | current = a) as a (V, V) float64 table whose rows sum to 1.

        With smoothing 0 it is the maximum-likelihood table: unseen pairs get probability 0
        (log 0 = -inf), and a character never seen as the current one gets a row of NaN.
        """
        smoothed = self.counts.double() + self.smoothing
        return smoothed / smoothed.sum(dim=1, keepdim=True)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Log-probabilities as logits, (B, T) -> (B, T, V): softmax of log p gives p back."""
        logits = self.probs.log()[idx]  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def nll(self, sequences) -> float:
        """Average negative log-likelihood per predicted character over every pair of the sequences."""
        a, b = pairs(sequences)
        return -self.probs.log()[a, b].mean().item()


class NeuralBigram(nn.Module):
    """The bigram as a network: one V x V weight matrix of next-character logits, learned.

    Feeding the current character as a one-hot vector x, the logits are x @ W: the one-hot picks
    out row `idx` of W. `W[idx]` is that same product without multiplying by all the zeros.
    The learned W plays the part of log(counts): unregularised, softmax(W[a]) approaches the
    unsmoothed count table's row a (an unseen pair's logit keeps falling). The network's version
    of add-k smoothing is a pull of W towards zero, the uniform row it starts from: makemore adds
    0.01 * (W**2).mean() to the loss; here the engine's weight decay can do it (--weight-decay).
    On Tiny Shakespeare it hardly matters: unseen pairs are rare in its val split.
    """

    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        # Zeros: every next character starts equally likely, so the loss at init is exactly ln(V).
        self.weight = nn.Parameter(torch.zeros(config.vocab_size, config.vocab_size))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(B, T) ids -> (B, T, V) logits, and the mean cross-entropy when targets (B, T) are given."""
        logits = self.weight[idx]  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
