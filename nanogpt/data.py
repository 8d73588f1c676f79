"""Text in: find or download a dataset, verify its sha256, split it, and cut it into batches.

Where a named dataset is looked for, in order:
  1. the folder named by the environment variable NANOGPT_DATA_DIR (asked for, so it comes first),
  2. the project's `data/` folder,
  3. its canonical address on the web (downloaded into `data/`, then verified).
Every copy, local or downloaded, must match the recorded sha256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from nanogpt.errors import UserError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
ENV_DIR = "NANOGPT_DATA_DIR"
ENV_OFFLINE = "NANOGPT_OFFLINE"  # set to 1 (the tests do) to forbid any download


@dataclass(frozen=True)
class Dataset:
    """A named text file with the address it comes from and the hash it must have."""

    filename: str
    url: str
    sha256: str
    num_bytes: int


DATASETS = {
    "shakespeare": Dataset(
        "tinyshakespeare.txt",
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        1115394,
    ),
    "names": Dataset(
        "names.txt",
        "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt",
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d",
        228145,
    ),
}


# ----------------------------------------------------------------------------- finding the text


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _verified(path: Path, ds: Dataset) -> Path:
    try:
        found = sha256_of(path)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if found != ds.sha256:
        raise UserError(
            f"{path} is corrupted: expected sha256 {ds.sha256}, found {found}; "
            "delete it and run again to download a fresh copy"
        )
    return path


def download(ds: Dataset, dest_dir: Path | None = None, timeout: float = 30.0) -> Path:
    """Download a dataset into data/ through a temporary file; keep it only if its hash matches."""
    dest_dir = Path(dest_dir or DATA_DIR)
    if os.environ.get(ENV_OFFLINE) == "1":
        raise UserError(f"{ds.filename} not found and downloads are off ({ENV_OFFLINE}=1); "
                        f"point {ENV_DIR} at a folder holding it")
    from tqdm import tqdm

    dest, tmp = dest_dir / ds.filename, None
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{ds.filename}.", suffix=".part")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(ds.url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or ds.num_bytes)
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {ds.filename}") as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
        found = sha256_of(tmp)
        if found != ds.sha256:
            raise UserError(f"downloaded {ds.filename} is corrupted: expected sha256 {ds.sha256}, "
                            f"found {found}")
        os.chmod(tmp, 0o644)  # mkstemp made it private to its owner; data is for everyone to read
        os.replace(tmp, dest)  # atomic: a reader sees no file or the whole verified file
        return dest
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
        raise UserError(f"could not download {ds.url} into {dest_dir} ({e}): put {ds.filename} "
                        f"there or set {ENV_DIR} to a folder holding it") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def dataset_path(name: str) -> Path:
    """Path to a verified local copy of a named dataset, downloading it when there is none."""
    ds = DATASETS[name]
    folders = ([Path(os.environ[ENV_DIR]).expanduser()] if os.environ.get(ENV_DIR) else []) + [DATA_DIR]
    for folder in folders:
        if (folder / ds.filename).is_file():
            return _verified(folder / ds.filename, ds)
    return download(ds)


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
