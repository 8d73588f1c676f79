"""Text in: a dataset's text, its train/val split, and the batches a run trains on.

    text = load_text("shakespeare")            # found or downloaded, verified (nanogpt.datasets)
    x, y = get_batch(ids, block_size, batch_size, generator)   # (B, T) windows and next tokens
    data = Batches(cfg)                        # a dataset cut for one stage, as train() uses it
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from nanogpt.datasets import DATASETS, dataset_path
from nanogpt.errors import UserError
from nanogpt.tokenizer import CharTokenizer, GPT2Tokenizer


def load_text(name_or_path: str) -> str:
    """The text of a named dataset ("shakespeare", "names") or of any UTF-8 file (no checksum)."""
    if name_or_path in DATASETS:
        path = dataset_path(name_or_path)
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise UserError(f"no dataset or file named {name_or_path!r} "
                            f"(datasets: {', '.join(DATASETS)})")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if not text:
        raise UserError(f"{path} is empty")
    return text


# ----------------------------------------------------------------------------- splits


def split_text(ids, train_frac: float = 0.9):
    """Contiguous train/val split of running text: the first 90% trains, the rest validates."""
    n = int(train_frac * len(ids))
    return ids[:n], ids[n:]


def split_names(words: list[str], seed: int = 42):
    """Shuffle the names with a fixed seed, then split 80/10/10 (the makemore convention)."""
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


# ----------------------------------------------------------------------------- batches


def short_split(n_tokens: int, block_size: int) -> str:
    """The message for a split too short to hold one window and its next token."""
    return (f"a split of the text holds {n_tokens} tokens, fewer than block_size+1 ({block_size + 1}): "
            "use a smaller --block-size or a longer text (the val split is its last 10%)")


def get_batch(data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator):
    """Random windows of running text: x is (B, T) and y is x shifted one to the left."""
    if len(data) <= block_size:
        raise UserError(short_split(len(data), block_size))
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[ix[:, None] + offsets]  # (B, T)
    y = data[ix[:, None] + offsets + 1]  # (B, T)
    return x, y


def context_examples(words: list[str], stoi: dict[str, int], block_size: int, boundary: str = "."):
    """Fixed-context examples from a list of words: X (N, block_size) of ids, Y (N,) the next id.

    Each word is padded on the left with the boundary token and ends with it, so that the model
    learns both how names start and when they stop (makemore's convention).
    """
    X, Y = [], []
    for w in words:
        context = [stoi[boundary]] * block_size
        for ch in w + boundary:
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)


def text_examples(data: torch.Tensor, block_size: int):
    """Fixed-context examples from running text: every window of block_size ids and the id after it."""
    if len(data) <= block_size:
        raise UserError(short_split(len(data), block_size))
    X = data.unfold(0, block_size, 1)[:-1]  # (N, block_size), a view: no copy
    Y = data[block_size:]  # (N,)
    return X, Y


def sample_examples(X: torch.Tensor, Y: torch.Tensor, batch_size: int, generator: torch.Generator):
    """A random minibatch of fixed-context examples."""
    ix = torch.randint(len(X), (batch_size,), generator=generator)
    return X[ix], Y[ix]


# ----------------------------------------------------------------------------- a run's data


class Batches:
    """A dataset cut for one stage: random training batches, fixed evaluation batches, full splits.

    Two forms: running text (GPT, bigram), where a batch is B windows of block_size tokens and
    the targets are the same windows shifted by one, (B, T) -> (B, T); and fixed-context examples
    (MLP, bigram on names), where a batch is B contexts and the one id after each, (B, T) -> (B,).
    """

    def __init__(self, cfg):
        self.block_size, self.batch_size = cfg.block_size, cfg.batch_size
        text = load_text(cfg.data)
        examples = cfg.stage == "mlp" or (cfg.stage == "bigram" and cfg.data == "names")
        if cfg.data == "names" and examples:
            self._names(text, cfg)
        else:
            self.tokenizer = GPT2Tokenizer() if cfg.tokenizer == "gpt2" else CharTokenizer.from_text(text)
            ids = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
            train, val = split_text(ids)
            if examples:
                self.splits = {"train": text_examples(train, cfg.block_size),
                               "val": text_examples(val, cfg.block_size)}
            else:
                self.splits = {"train": train, "val": val}
        self.form = "examples" if examples else "text"
        self.unsqueeze = cfg.stage == "bigram" and examples  # the bigram wants targets (B, 1)

    def _names(self, text: str, cfg):
        # makemore's convention: '.' marks both ends of a name; contexts of block_size ids
        words = text.split()
        self.tokenizer = CharTokenizer(["."] + sorted(set("".join(words))))
        block = 1 if cfg.stage == "bigram" else cfg.block_size
        train, val, _test = split_names(words)
        self.splits = {name: context_examples(w, self.tokenizer.stoi, block)
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
            return get_batch(self.splits[split], self.block_size, self.batch_size, generator)
        x, y = sample_examples(*self.splits[split], self.batch_size, generator)
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
