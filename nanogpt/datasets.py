"""Where the course's texts come from: find a dataset, or download it, and verify its sha256.

Where a named dataset is looked for, in order:
  1. the folder named by the environment variable NANOGPT_DATA_DIR (asked for, so it comes first),
  2. the data folder: the clone's `data/`, or, for an installed package, a user folder
     (~/.local/share/nanogpt on Linux, ~/Library/Application Support/nanogpt on macOS,
     %LOCALAPPDATA%\\nanogpt on Windows), never the installed package's own folder;
  3. its canonical address on the web (downloaded into the data folder, then verified).
Every copy, local or downloaded, must match the recorded sha256.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nanogpt.errors import UserError


def user_data_dir() -> Path:
    """The data folder: the clone's data/ when the package runs from a clone, else a user folder."""
    clone = Path(__file__).resolve().parent.parent
    if (clone / "pyproject.toml").is_file() and (clone / "data").is_dir():
        return clone / "data"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "nanogpt"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "nanogpt"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "nanogpt"


DATA_DIR = user_data_dir()
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
        raise UserError(f"{ds.filename} is not in {dest_dir} and downloads are off ({ENV_OFFLINE}=1): "
                        f"put it there, or point {ENV_DIR} at a folder holding it")
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


def main(argv=None) -> int:
    """`python -m nanogpt.datasets` (make data): find or download every dataset, verify it, and
    print where it is."""
    from nanogpt import cli

    parser = cli.parser("python -m nanogpt.datasets",
                        "Find (or download) Tiny Shakespeare and names.txt, verify their sha256, print "
                        f"where they are. Looked for in ${ENV_DIR}, then {DATA_DIR}.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"{' | '.join(DATASETS)} (default: all)")

    def find_all(args):
        unknown = [n for n in args.names if n not in DATASETS]
        if unknown:
            raise UserError(f"no dataset named {', '.join(unknown)} (datasets: {', '.join(DATASETS)})")
        for name in args.names or DATASETS:
            print(f"{name}: {dataset_path(name)}")

    return cli.invoke(find_all, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
