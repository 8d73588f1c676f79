"""The data a run trains on, cut for its stage: random training batches, fixed evaluation batches,
and the whole splits for the final score.

    data = Batches(cfg)
    x, y = data.draw("train", generator)      # one random batch
    eval_batches = data.fixed(n, generator)   # n batches per split, the same at every evaluation
    for x, y in data.full("val"): ...         # every position of the split, once
"""

from __future__ import annotations

import torch

from nanogpt import data as datalib
from nanogpt.tokenizer import CharTokenizer, GPT2Tokenizer


class Batches:
    """A dataset cut for one stage: random training batches, fixed evaluation batches, full splits.

    Two forms: running text (GPT, bigram), where a batch is B windows of block_size tokens and
    the targets are the same windows shifted by one, (B, T) -> (B, T); and fixed-context examples
    (MLP, bigram on names), where a batch is B contexts and the one id after each, (B, T) -> (B,).
    """

    def __init__(self, cfg):
        self.block_size, self.batch_size = cfg.block_size, cfg.batch_size
        text = datalib.load_text(cfg.data)
        examples = cfg.stage == "mlp" or (cfg.stage == "bigram" and cfg.data == "names")
        if cfg.data == "names" and examples:
            self._names(text, cfg)
        else:
            self.tokenizer = GPT2Tokenizer() if cfg.tokenizer == "gpt2" else CharTokenizer.from_text(text)
            ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
            train, val = datalib.split_text(ids)
            if examples:
                self.splits = {"train": datalib.text_examples(train, cfg.block_size),
                               "val": datalib.text_examples(val, cfg.block_size)}
            else:
                self.splits = {"train": train, "val": val}
        self.form = "examples" if examples else "text"
        self.unsqueeze = cfg.stage == "bigram" and examples  # the bigram wants targets (B, 1)

    def _names(self, text: str, cfg):
        # makemore's convention: '.' marks both ends of a name; contexts of block_size ids
        words = text.split()
        self.tokenizer = CharTokenizer(["."] + sorted(set("".join(words))))
        block = 1 if cfg.stage == "bigram" else cfg.block_size
        train, val, _test = datalib.split_names(words)
        self.splits = {name: datalib.context_examples(w, self.tokenizer.stoi, block)
                       for name, w in (("train", train), ("val", val))}

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * (self.block_size if self.form == "text" else 1)

    def sizes(self) -> dict:
        """How many tokens (or examples) each split holds."""
        return {k: len(v) if self.form == "text" else len(v[0]) for k, v in self.splits.items()}

    def draw(self, split: str, generator: torch.Generator):
        """One random batch (x, y) of a split."""
        if self.form == "text":
            return datalib.get_batch(self.splits[split], self.block_size, self.batch_size, generator)
        x, y = datalib.sample_examples(*self.splits[split], self.batch_size, generator)
        return x, (y[:, None] if self.unsqueeze else y)

    def fixed(self, n: int, generator: torch.Generator) -> dict:
        """n batches per split, drawn once: every evaluation scores the same ones."""
        return {split: [self.draw(split, generator) for _ in range(n)] for split in self.splits}

    def full(self, split: str, rows: int = 4096):
        """The whole split in batches: every example, or the text cut into windows side by side."""
        if self.form == "text":
            ids, T = self.splits[split], self.block_size
            n = (len(ids) - 1) // T
            X, Y = ids[: n * T].view(n, T), ids[1 : n * T + 1].view(n, T)  # (n, T) each
            # about `rows` positions a batch, and at most 4M logits (GPT-2's vocabulary is large)
            rows = max(1, min(rows // T, 2**22 // (T * self.tokenizer.vocab_size)))
        else:
            X, Y = self.splits[split]
            Y = Y[:, None] if self.unsqueeze else Y
        for i in range(0, len(X), rows):
            yield X[i : i + rows], Y[i : i + rows]
