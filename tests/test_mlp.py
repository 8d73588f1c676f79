import math

import pytest
import torch

from nanogpt.bigram import CountBigram, name_sequences
from nanogpt.data import context_examples, load_text, sample_examples, split_names
from nanogpt.mlp import INITS, MLP, TANH_GAIN, BatchNorm1d, Linear, MLPConfig


def tiny(**kw):
    cfg = dict(vocab_size=27, block_size=3, n_embd=10, n_hidden=64)
    return MLP(MLPConfig(**{**cfg, **kw}), generator=torch.Generator().manual_seed(0))


def test_batchnorm_in_training_gives_each_feature_mean_0_and_std_1():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=g, dtype=torch.float64) * torch.arange(1, 9) + 3.0
    out = BatchNorm1d(8).double()(x)
    assert torch.allclose(out.mean(0), torch.zeros(8, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(8, dtype=torch.float64), atol=1e-4)


def test_batchnorm_matches_torch_in_train_and_eval():
    g = torch.Generator().manual_seed(0)
    ours = BatchNorm1d(6, eps=1e-3, momentum=0.2).double()
    ref = torch.nn.BatchNorm1d(6, eps=1e-3, momentum=0.2).double()
    with torch.no_grad():
        ours.gain.copy_(torch.rand(6, generator=g) + 0.5)
        ours.bias.copy_(torch.randn(6, generator=g))
        ref.weight.copy_(ours.gain)
        ref.bias.copy_(ours.bias)
    for _ in range(5):  # several steps, so that the running statistics must agree too
        x = torch.randn(16, 6, generator=g, dtype=torch.float64) * 2 + 1
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-6)
    ours.eval(), ref.eval()
    x = torch.randn(3, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    expected = ours.gain * (x - ours.running_mean) / torch.sqrt(ours.running_var + 1e-3) + ours.bias
    assert torch.allclose(ours(x), expected, atol=1e-12)  # eval: the running statistics, not x's own


def test_running_statistics_are_buffers_saved_with_the_model():
    m = tiny(batchnorm=True)
    names = set(m.state_dict())
    assert any(n.endswith("running_mean") for n in names) and any(n.endswith("running_var") for n in names)
    assert not any("running" in n for n, _ in m.named_parameters())
    linear = [layer for layer in m.net.layers if isinstance(layer, Linear)]
    assert linear[0].bias is None and linear[-1].bias is not None  # no bias before a BatchNorm


def test_kaiming_keeps_pre_activation_std_at_gain_times_input_std_through_a_deep_stack():
    m = tiny(n_layer=5, n_hidden=100, init="kaiming")
    x = torch.randint(27, (2000, 3), generator=torch.Generator().manual_seed(1))
    m(x)
    layers = list(m.net.layers)
    hidden = [(layers[i - 1], layer) for i, layer in enumerate(layers) if isinstance(layer, Linear)][:-1]
    assert len(hidden) == 5
    for before, linear in hidden:
        intended = TANH_GAIN * before.out.pow(2).mean().sqrt()  # Var(x @ W) = fan_in Var(W) E[x^2]
        assert linear.out.std().item() == pytest.approx(intended.item(), rel=0.10)
    naive = tiny(n_layer=5, n_hidden=100, init="naive")
    naive(x)
    assert naive.net.layers[-3].out.std() > 4 * linear.out.std()  # randn weights: saturating tanh


@pytest.mark.parametrize("init", ["softmax_fix", "tanh_fix", "kaiming"])
def test_small_output_layer_gives_an_init_loss_near_ln_vocab(init):
    x = torch.randint(27, (1000, 3), generator=torch.Generator().manual_seed(1))
    y = torch.randint(27, (1000,), generator=torch.Generator().manual_seed(2))
    _, loss = tiny(init=init)(x, y)
    assert loss.item() == pytest.approx(math.log(27), abs=0.1)
    _, naive_loss = tiny(init="naive")(x, y)
    assert naive_loss.item() > 2 * math.log(27)  # confidently wrong


def test_short_context_is_left_padded_with_the_boundary_id():
    m = tiny(batchnorm=True).eval()
    short = torch.tensor([[5, 7]])
    assert torch.equal(m(short)[0], m(torch.tensor([[0, 5, 7]]))[0])
    assert m(torch.tensor([[0, 0, 0]]))[0].shape == (1, 27)
    other = tiny(batchnorm=True, pad_id=4).eval()  # another vocabulary's boundary
    assert torch.equal(other(short)[0], other(torch.tensor([[4, 5, 7]]))[0])


def test_every_init_builds_and_a_bad_one_is_refused():
    for init in INITS:
        for bn in (False, True):
            logits, loss = tiny(init=init, batchnorm=bn)(torch.zeros(4, 3, dtype=torch.long),
                                                         torch.zeros(4, dtype=torch.long))
            assert logits.shape == (4, 27) and torch.isfinite(loss)
    with pytest.raises(ValueError):
        MLPConfig(init="xavier")


def test_a_short_mlp_run_beats_the_bigram_on_validation():
    words = load_text("names").splitlines()
    stoi = {c: i for i, c in enumerate("." + "".join(sorted(set("".join(words)))))}
    train_words, val_words, _ = split_names(words)
    bigram_val = CountBigram(27).fit(name_sequences(train_words, stoi)).nll(name_sequences(val_words, stoi))
    Xtr, Ytr = context_examples(train_words, stoi, 3)
    Xva, Yva = context_examples(val_words, stoi, 3)
    torch.manual_seed(0)
    m = tiny(batchnorm=True)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        loss = m(*sample_examples(Xtr, Ytr, 128, g))[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        val = m.eval()(Xva, Yva)[1].item()
    assert val < bigram_val - 0.1, (val, bigram_val)


def test_batchnorm_trains_under_bfloat16_autocast_and_refuses_a_batch_of_one():
    bn = BatchNorm1d(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = bn(Linear(3, 4, bias=False)(torch.randn(8, 3)))  # bf16 statistics, float32 buffers
    assert torch.isfinite(out).all() and bn.running_var.dtype == torch.float32
    with pytest.raises(ValueError, match="at least 2 examples"):
        bn(torch.randn(1, 4))
