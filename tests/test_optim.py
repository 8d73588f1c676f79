import io
import math

import pytest
import torch
from test_train import losses, records, tiny

import nanogpt.interrupt
from nanogpt.config import preset
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.optim import Optimizers, make_optimizer, set_lr
from nanogpt.train import train


def small_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=2, n_head=2, n_embd=8, **kw)).double()


def names_of(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def fake_gradients(model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = small_gpt(bias=True)
    opt = make_optimizer(model, preset("smoke", optimizer="muon"), "cpu")
    assert isinstance(opt, Optimizers) and set(opt.optimizers) == {"muon", "adamw"}
    muon = names_of(model, [p for g in opt.optimizers["muon"].param_groups for p in g["params"]])
    assert muon == {f"blocks.{i}.{m}.weight" for i in range(2)
                    for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    decayed, plain = opt.optimizers["adamw"].param_groups
    assert names_of(model, decayed["params"]) == {"wte.weight", "wpe.weight", "head.weight"}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 1 for p in plain["params"])  # every gain and bias, the blocks' too
    assert "blocks.0.attn.qkv.bias" in names_of(model, plain["params"])
    every = sum(len(g["params"]) for g in opt.param_groups)
    assert every == len(list(model.parameters()))  # each parameter in exactly one group


def test_a_tied_head_is_one_adamw_parameter():
    model = small_gpt(tie_weights=True)
    opt = make_optimizer(model, preset("smoke", optimizer="muon"), "cpu")
    decayed = opt.optimizers["adamw"].param_groups[0]["params"]
    assert len(decayed) == 2 and any(p is model.wte.weight for p in decayed)  # wte (= head), wpe


def test_muon_steps_at_muon_lr_on_the_schedule_the_loop_sets():
    cfg = preset("smoke", optimizer="muon", lr=3e-3, muon_lr=0.05, muon_momentum=0.9)
    model, reference = small_gpt(), small_gpt()
    opt = make_optimizer(model, cfg, "cpu")
    hidden = [p for n, p in reference.named_parameters() if n.startswith("blocks.") and p.dim() == 2]
    plain_muon = torch.optim.Muon(hidden, lr=0.05 * 0.5, momentum=0.9, weight_decay=0.0)
    logged = set_lr(opt, 0.5 * cfg.lr)  # what train() does: half-way down the schedule
    fake_gradients(model, 1)
    fake_gradients(reference, 1)
    opt.step()
    plain_muon.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        if name.startswith("blocks.") and p.dim() == 2:
            assert torch.equal(p, q), name
    # each group reads back the lr it stepped with, and the log says both
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.5 * cfg.lr, 0.5 * 0.05])
    assert logged == {"lr": 0.5 * cfg.lr, "muon_lr": pytest.approx(0.025)}


def test_optimizers_state_dict_round_trip_continues_exactly():
    cfg = preset("smoke", optimizer="muon")
    model = small_gpt()
    opt = make_optimizer(model, cfg, "cpu")
    for seed in range(3):
        fake_gradients(model, seed)
        opt.step()
    saved_model = {k: v.clone() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint holds it: plain tensors and numbers
    for seed in (3, 4):
        fake_gradients(model, seed)
        opt.step()

    resumed = small_gpt()
    resumed.load_state_dict(saved_model)
    opt2 = make_optimizer(resumed, cfg, "cpu")
    buffer.seek(0)
    opt2.load_state_dict(torch.load(buffer, weights_only=True))
    for seed in (3, 4):
        fake_gradients(resumed, seed)
        opt2.step()
    for (name, p), q in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_zero_grad_clears_both_optimizers():
    model = small_gpt()
    opt = make_optimizer(model, preset("smoke", optimizer="muon"), "cpu")
    fake_gradients(model, 0)
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in model.parameters())


def test_muon_training_learns(tmp_path):
    result = train(tiny(tmp_path, max_iters=40, eval_interval=20, optimizer="muon"), progress=False)
    first = records(tmp_path, "eval")[0]["val_loss"]
    assert abs(first - math.log(65)) < 0.3 and result["val_loss"] < first - 0.5


def test_a_stopped_muon_run_resumes_exactly(tmp_path, monkeypatch):
    settings = dict(max_iters=20, eval_interval=10, optimizer="muon", dropout=0.1, dtype="float64")
    train(tiny(tmp_path / "whole", **settings), progress=False)

    calls = []  # the loop asks once per step: say "stop" at step 12 (last.pt is written there)
    monkeypatch.setattr(nanogpt.interrupt.StopRequests, "requested",
                        lambda self: calls.append(1) or len(calls) == 13)
    assert train(tiny(tmp_path / "stopped", **settings), progress=False)["interrupted"]
    monkeypatch.undo()
    train(tiny(tmp_path / "stopped", resume=True), progress=False)
    whole, resumed = losses(tmp_path / "whole"), losses(tmp_path / "stopped")
    assert sorted(resumed) == sorted(whole) == list(range(1, 21))
    assert all(whole[i] == resumed[i] for i in whole)


@pytest.mark.parametrize("stage", ["bigram", "mlp"])
def test_muon_is_refused_for_the_bigram_and_the_mlp(stage):
    with pytest.raises(UserError, match="--optimizer muon trains the matrices inside a GPT"):
        preset(stage, optimizer="muon")
