"""Test settings: never touch the network, take the data from ../shared/data when it is there."""

import os
from pathlib import Path

import pytest
import torch

os.environ["NANOGPT_OFFLINE"] = "1"  # a test that would download fails instead
_shared = Path(__file__).resolve().parents[2] / "shared" / "data"
if "NANOGPT_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["NANOGPT_DATA_DIR"] = str(_shared)

# Tiny models: one thread avoids thread start-up and contention costs that dwarf the arithmetic.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shakespeare():
    from nanogpt.data import load_text

    return load_text("shakespeare")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every test module starts on one thread, even after a train() call that chose more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smoke_ckpt(tmp_path_factory):
    """best.pt of the smoke preset's GPT after its 100 training steps, trained once per session."""
    from nanogpt.config import preset
    from nanogpt.train import train

    out = tmp_path_factory.mktemp("smoke")
    train(preset("smoke", out_dir=str(out)), progress=False)
    return out / "best.pt"
