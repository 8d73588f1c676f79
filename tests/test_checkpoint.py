import random

import numpy as np
import pytest
import torch

from nanogpt.checkpoint import (
    clean_state_dict,
    load_checkpoint,
    load_model,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nanogpt.config import preset
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.models import STAGES, build_model
from nanogpt.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(preset("smoke", n_layer=1, n_embd=16, block_size=16, batch_size=4, max_iters=4,
                 eval_interval=2, eval_iters=1, out_dir=str(out)), progress=False)
    return out


def test_checkpoint_loads_with_weights_only_and_holds_every_field(run_dir):
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "config", "model_config", "stage", "tokenizer", "iter",
                "best_val_loss", "rng", "versions"):
        assert key in ckpt
    assert ckpt["iter"] == 4 and ckpt["stage"] == "gpt" and ckpt["config"]["n_embd"] == 16
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python", "generators"}
    assert set(ckpt["rng"]["generators"]) == {"batch", "eval"}
    assert not any(k.startswith("_orig_mod.") for k in ckpt["model"])
    assert {"torch", "numpy", "python"} <= set(ckpt["versions"])


def test_load_model_rebuilds_the_trained_model(run_dir):
    model, tok, ckpt = load_model(run_dir / "best.pt")
    assert isinstance(model, GPT) and not model.training
    assert tok.vocab_size == 65 and tok.decode(tok.encode("Hi!")) == "Hi!"
    logits, _ = model(torch.tensor([tok.encode("ROMEO:")]))
    assert logits.shape == (1, 6, 65)
    assert load_model(run_dir)[2]["iter"] == ckpt["iter"]  # a run folder stands for its best.pt


def test_missing_checkpoint_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="no checkpoint at .*make train"):
        load_model(tmp_path / "nothing.pt")


def test_broken_checkpoint_is_a_one_line_user_error(tmp_path, run_dir):
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run_dir / "last.pt").read_bytes()[:200])
    with pytest.raises(UserError, match="not a readable checkpoint") as e:
        load_checkpoint(broken)
    assert "\n" not in str(e.value)


def test_checkpoints_of_another_kind_or_a_newer_format_are_one_line_errors(tmp_path, run_dir):
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    for name, change, message in (("partial.pt", {"tokenizer": None}, "missing tokenizer"),
                                  ("newer.pt", {"format": 10**6}, "format 1000000"),
                                  ("misfit.pt", {"model_config": {**ckpt["model_config"], "n_embd": 32}},
                                   "do not fit .*size mismatch")):
        bad = {k: v for k, v in {**ckpt, **change}.items() if v is not None}
        torch.save(bad, tmp_path / name)
        with pytest.raises(UserError, match=message) as e:
            load_model(tmp_path / name)
        assert "\n" not in str(e.value)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "x.pt"
    save_checkpoint({"a": torch.ones(2)}, path)
    save_checkpoint({"a": torch.zeros(2)}, path)  # replaces the old file in one rename
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.zeros(2))


def test_compiled_model_prefix_is_stripped():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))

    class Compiled(torch.nn.Module):  # what torch.compile's wrapper looks like from outside
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

    assert list(clean_state_dict(Compiled(model))) == list(model.state_dict())


def test_random_states_come_back_exactly():
    g = torch.Generator().manual_seed(3)
    state = rng_state(batch=g)
    a = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    set_rng_state(state, batch=g)
    b = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert torch.equal(a[3], b[3])


def test_the_stage_table_names_every_stage_by_its_class():
    from nanogpt.bigram import BigramConfig, NeuralBigram
    from nanogpt.mlp import MLP, MLPConfig

    assert STAGES == {"bigram": (NeuralBigram, BigramConfig), "mlp": (MLP, MLPConfig),
                      "gpt": (GPT, GPTConfig)}
    model = build_model("gpt", {"vocab_size": 7, "block_size": 4, "n_layer": 1, "n_head": 1,
                                "n_embd": 8, "not_a_gpt_field": 1})
    assert isinstance(model, STAGES["gpt"][0])
    with pytest.raises(UserError, match="unknown stage"):
        build_model("transformer", {})


def test_loading_names_model_settings_this_version_does_not_know(run_dir, tmp_path, capsys):
    ckpt = load_checkpoint(run_dir / "best.pt")
    ckpt["model_config"]["rotary"] = True
    save_checkpoint(ckpt, tmp_path / "odd.pt")
    load_model(tmp_path / "odd.pt")
    assert "does not know; ignored: rotary" in capsys.readouterr().err
