import os

import pytest
import torch

from nanogpt import datasets as data
from nanogpt.data import (
    context_examples,
    get_batch,
    load_text,
    split_names,
    split_text,
    text_examples,
)
from nanogpt.datasets import DATASETS
from nanogpt.errors import UserError


def test_shakespeare_loads_verified_with_known_sizes(shakespeare):
    assert data.sha256_of(data.dataset_path("shakespeare")) == DATASETS["shakespeare"].sha256
    assert len(shakespeare) == 1_115_394
    assert len(set(shakespeare)) == 65
    train, val = split_text(shakespeare)
    assert (len(train), len(val)) == (1_003_854, 111_540)


def test_names_split_80_10_10_with_fixed_seed():
    words = load_text("names").splitlines()
    assert len(words) == 32_033
    tr, va, te = split_names(words)
    assert (len(tr), len(va), len(te)) == (25_626, 3_203, 3_204)
    assert split_names(words)[0] == tr  # the seed fixes the shuffle


def _isolate(monkeypatch, tmp_path):
    """Point both data folders at an empty temporary folder."""
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "data")
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "data").mkdir()
    (tmp_path / "env").mkdir()


def test_corrupted_local_copy_is_rejected_and_nothing_is_written(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    bad = tmp_path / "env" / "tinyshakespeare.txt"
    bad.write_text("First Citizen: this is not the real file\n")
    with pytest.raises(UserError) as e:
        load_text("shakespeare")
    msg = str(e.value)
    assert "tinyshakespeare.txt" in msg and DATASETS["shakespeare"].sha256 in msg
    assert data.sha256_of(bad) in msg and "\n" not in msg
    assert list((tmp_path / "data").iterdir()) == []


def test_offline_without_copy_names_address_and_env_var(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("NANOGPT_OFFLINE", "0")

    def no_network(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", no_network)
    with pytest.raises(UserError) as e:
        load_text("names")
    assert DATASETS["names"].url in str(e.value) and "NANOGPT_DATA_DIR" in str(e.value)
    assert list((tmp_path / "data").iterdir()) == []  # the temporary file is gone too


def test_download_with_wrong_hash_leaves_no_file(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("NANOGPT_OFFLINE", "0")

    class FakeResponse:
        headers = {"Content-Length": "5"}

        def __init__(self):
            self.chunks = [b"hello", b""]

        def read(self, n):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: FakeResponse())
    with pytest.raises(UserError, match="corrupted"):
        load_text("names")
    assert list((tmp_path / "data").iterdir()) == []


def test_download_with_right_hash_lands_in_data_dir(monkeypatch, tmp_path):
    real = data.dataset_path("names").read_bytes()
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("NANOGPT_OFFLINE", "0")

    class FakeResponse:
        headers = {"Content-Length": str(len(real))}

        def __init__(self):
            self.chunks = [real, b""]

        def read(self, n):
            return self.chunks.pop(0)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda *a, **k: FakeResponse())
    assert len(load_text("names").splitlines()) == 32_033
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["names.txt"]
    assert (tmp_path / "data" / "names.txt").stat().st_mode & 0o044 == 0o044  # readable by all


def test_tests_never_download(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path)
    assert os.environ["NANOGPT_OFFLINE"] == "1"
    with pytest.raises(UserError, match="downloads are off"):
        load_text("shakespeare")


def test_any_utf8_file_loads_and_bad_paths_give_one_line_errors(tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("héllo wörld\n", encoding="utf-8")
    assert load_text(str(corpus)) == "héllo wörld\n"
    with pytest.raises(UserError, match="no dataset or file"):
        load_text(str(tmp_path / "missing.txt"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        load_text(str(tmp_path / "bin.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="is empty"):
        load_text(str(tmp_path / "empty.txt"))


def test_the_folder_named_by_the_environment_comes_before_data(monkeypatch, tmp_path):
    real = data.dataset_path("names").read_bytes()
    _isolate(monkeypatch, tmp_path)
    (tmp_path / "data" / "names.txt").write_text("a broken copy\n")  # an error if it were read
    (tmp_path / "env" / "names.txt").write_bytes(real)
    assert data.dataset_path("names") == tmp_path / "env" / "names.txt"


def test_a_split_shorter_than_a_window_is_a_one_line_error():
    with pytest.raises(UserError, match="fewer than block_size"):
        text_examples(torch.arange(8), block_size=8)


def test_batches_shift_by_one_and_repeat_with_the_seed():
    d = torch.arange(1000)
    x, y = get_batch(d, block_size=8, batch_size=4, generator=torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)
    x2, y2 = get_batch(d, 8, 4, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = get_batch(d, 8, 4, torch.Generator().manual_seed(2))
    assert not torch.equal(x, x3)


def test_context_examples_follow_makemore():
    stoi = {ch: i for i, ch in enumerate(".abem")}
    X, Y = context_examples(["emma"], stoi, block_size=3)
    assert X.shape == (5, 3) and Y.tolist() == [stoi[c] for c in "emma."]
    assert X[0].tolist() == [0, 0, 0] and X[-1].tolist() == [stoi["m"], stoi["m"], stoi["a"]]
    Xt, Yt = text_examples(torch.arange(10), block_size=3)
    assert Xt.shape == (7, 3) and Xt[2].tolist() == [2, 3, 4] and Yt[2].item() == 5
