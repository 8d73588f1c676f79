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
