import ast
from pathlib import Path

import pytest
import torch

from nanogpt import backprop
from nanogpt.backprop import (
    Params,
    backward_atomic,
    backward_fused,
    bn_backward,
    cmp,
    cross_entropy_backward,
    forward,
    gradients,
    init_params,
    names_examples,
    train_manual,
)
from nanogpt.errors import UserError
from nanogpt.mlp import MLP, MLPConfig

TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5}
CASES = [  # (seed, batch size, hidden width): duplicates in X exercise the scatter-add into C
    (0, 32, 64),
    (1, 5, 200),
    (2, 2, 7),  # the smallest batch BatchNorm's n-1 allows
    (3, 17, 32),
]


def _batch(seed, n, n_hidden, dtype, vocab_size=27, block_size=3, n_embd=10):
    """Parameters and a random batch, autograd's gradients on every intermediate and parameter."""
    g = torch.Generator().manual_seed(seed)
    params = init_params(vocab_size, block_size, n_embd, n_hidden, generator=g, dtype=dtype)
    X = torch.randint(0, vocab_size, (n, block_size), generator=g)
    Y = torch.randint(0, vocab_size, (n,), generator=g)
    loss, acts = forward(params, X, Y)
    for t in acts.values():
        t.retain_grad()
    loss.backward()
    reference = {name: t.grad for name, t in [*acts.items(), *params.items()]}
    return params, X, Y, acts, reference


@pytest.fixture(scope="module")
def names():
    return names_examples()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("seed,n,n_hidden", CASES)
def test_every_atomic_gradient_matches_autograd(seed, n, n_hidden, dtype):
    params, X, Y, acts, reference = _batch(seed, n, n_hidden, dtype)
    with torch.no_grad():
        manual = backward_atomic(params, X, Y, acts)
    assert manual.keys() == reference.keys()  # every intermediate and parameter has its gradient
    for name, grad in manual.items():
        result = cmp(name, grad, reference[name], verbose=False)
        assert result.maxdiff <= TOLERANCE[dtype], result


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("seed,n,n_hidden", CASES)
def test_fused_formulas_match_atomic_and_autograd(seed, n, n_hidden, dtype):
    params, X, Y, acts, reference = _batch(seed, n, n_hidden, dtype)
    with torch.no_grad():
        atomic = backward_atomic(params, X, Y, acts)
        dlogits = cross_entropy_backward(acts["logits"], Y)
        dhprebn = bn_backward(reference["hpreact"], acts["bnraw"], params.bngain, acts["bnvar_inv"])
        fused = backward_fused(params, X, Y, acts)
    tol = TOLERANCE[dtype]
    for name, grad in [("logits", dlogits), ("hprebn", dhprebn), *fused.items()]:
        assert cmp(name, grad, reference[name], verbose=False).maxdiff <= tol, name
        assert cmp(name, grad, atomic[name], verbose=False).maxdiff <= tol, name


def test_fused_backward_gives_every_parameter_its_gradient():
    params, X, Y, acts, _ = _batch(0, 8, 16, torch.float64)
    fused = backward_fused(params, X, Y, acts)
    assert {k: v.shape for k, v in fused.items()} == {k: v.shape for k, v in params.items()}


def test_a_wrong_formula_is_caught_because_parameters_are_not_trivial():
    # Forgetting the gain in the BatchNorm backward is exact when the gain is all ones.
    params, X, Y, acts, reference = _batch(0, 16, 8, torch.float64)
    assert (params.bngain != 1).all() and (params.bnbias != 0).all() and (params.b2 != 0).all()
    forgot_gain = bn_backward(reference["hpreact"], acts["bnraw"], 1.0, acts["bnvar_inv"])
    result = cmp("hprebn", forgot_gain, reference["hprebn"], verbose=False)
    assert not result.approximate and result.maxdiff > 10 * TOLERANCE[torch.float32]


def test_cmp_reports_exact_approximate_and_max_difference(capsys):
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert cmp("same", a, a.clone()) == backprop.Comparison("same", True, True, 0.0)
    near = cmp("near", a, a + 1e-12)
    assert (near.exact, near.approximate) == (False, True) and near.maxdiff == pytest.approx(1e-12)
    far = cmp("far", a, a + torch.tensor([0.0, 0.5], dtype=torch.float64))
    assert (far.exact, far.approximate, far.maxdiff) == (False, False, 0.5)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("same") and "exact: True" in lines[0]


def test_cmp_reads_the_reference_from_grad_and_rejects_a_wrong_shape():
    x = torch.ones(2, 3, requires_grad=True)
    (x * 2).sum().backward()
    assert cmp("x", torch.full((2, 3), 2.0), x, verbose=False).exact
    with pytest.raises(ValueError, match="shape"):
        cmp("x", torch.full((3,), 2.0), x, verbose=False)  # would broadcast silently otherwise
    y = x * 3  # not retained: autograd kept no gradient for it
    with pytest.raises(ValueError, match="retain_grad"):
        cmp("y", torch.ones(2, 3), y, verbose=False)


def test_parameters_follow_the_generator_and_dtype():
    def make(seed):
        return init_params(27, 3, 10, 64, generator=torch.Generator().manual_seed(seed),
                           dtype=torch.float64)

    a, b, c = make(0), make(0), make(1)
    for (name, pa), (_, pb), (_, pc) in zip(a.items(), b.items(), c.items(), strict=True):
        assert pa.dtype == torch.float64 and pa.requires_grad and pa.is_leaf, name
        assert torch.equal(pa, pb) and not torch.equal(pa, pc), name
    assert isinstance(a, Params) and a.W1.shape == (30, 64) and a.bngain.shape == (64,)


def test_manual_training_matches_autograd_training_step_for_step(names):
    kwargs = dict(steps=6, n_hidden=16, dtype=torch.float64, seed=3)
    runs = {src: train_manual(names, gradients_from=src, **kwargs)
            for src in ("fused", "atomic", "autograd")}
    for src in ("fused", "atomic"):
        assert runs[src].losses == pytest.approx(runs["autograd"].losses, abs=1e-12, rel=0)
        for (name, p), (_, q) in zip(runs[src].params.items(), runs["autograd"].params.items(),
                                     strict=True):
            assert (p - q).abs().max() <= 1e-9, name
        assert runs[src].val_loss == pytest.approx(runs["autograd"].val_loss, abs=1e-9)


def test_compare_every_checks_gradients_and_stops_when_they_drift(names, monkeypatch):
    run = train_manual(names, 4, n_hidden=8, dtype=torch.float64, compare_every=2)
    assert [s for s, _ in run.grad_diffs] == [0, 2] and max(d for _, d in run.grad_diffs) <= 1e-9
    monkeypatch.setattr(backprop, "bn_backward", lambda dhpreact, *_: dhpreact)  # a broken formula
    with pytest.raises(AssertionError, match="differ from autograd"):
        train_manual(names, 4, n_hidden=8, dtype=torch.float64, compare_every=2)


def test_training_rejects_a_batch_too_small_for_batchnorm(names):
    with pytest.raises(UserError, match="batch_size >= 2"):
        train_manual(names, 1, batch_size=1)


def test_cli_prints_train_and_val_loss(capsys):
    assert backprop.main(["--steps", "3", "--n-hidden", "8", "--compare-every", "1",
                          "--log-every", "1"]) == 0
    out = capsys.readouterr().out
    assert "train loss" in out and "val loss" in out and "largest gradient difference" in out


def test_cli_reports_a_bad_flag_value_and_exits_2(capsys):
    assert backprop.main(["--steps", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def _nudged_mlp(seed=0, n_hidden=16):
    """mlp.MLP with one hidden layer and BatchNorm in float64, its weights moved off 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    model = MLP(MLPConfig(27, 3, 10, n_hidden, n_layer=1, batchnorm=True), generator=g).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return model


@pytest.mark.parametrize("source", ["fused", "atomic"])
def test_backprop_computes_the_mlp_of_mlp_py_same_loss_and_gradients(source):
    model = _nudged_mlp()
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randint(0, 27, (32, 3), generator=g), torch.randint(0, 27, (32,), generator=g)
    params = Params(*(t.detach().clone() for _, t in Params.of(model).items()))  # a copy
    _, model_loss = model.train()(X, Y)  # training mode: BatchNorm on the batch's statistics
    model_loss.backward()
    loss, grads = gradients(params, X, Y, source)
    assert abs(loss.item() - model_loss.item()) <= 1e-12
    assert len(grads) == len(list(model.parameters())) == 6  # every parameter of the model, no other
    for (name, grad), (_, p) in zip(grads.items(), Params.of(model).items(), strict=True):
        assert (grad - p.grad).abs().max() <= 1e-12, name


def test_running_statistics_follow_the_models_own_batchnorm():
    ours, reference = _nudged_mlp(), _nudged_mlp()
    bn, ref_bn = ours.net.layers[3], reference.net.layers[3]
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        X, Y = torch.randint(0, 27, (8, 3), generator=g), torch.randint(0, 27, (8,), generator=g)
        gradients(Params.of(ours), X, Y, "fused", running=bn)
        reference.train()(X, Y)
    assert (bn.running_mean - ref_bn.running_mean).abs().max() <= 1e-12
    assert (bn.running_var - ref_bn.running_var).abs().max() <= 1e-12
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # they did move


def test_trained_result_is_an_mlp_scored_by_its_own_forward(names):
    run = train_manual(names, 5, n_hidden=8, dtype=torch.float64)
    assert isinstance(run.model, MLP) and not run.model.training
    assert run.params.W1 is run.model.net.layers[2].weight  # the model's tensors, trained in place
    with torch.no_grad():
        assert run.val_loss == run.model(names.Xval, names.Yval)[1].item()
    assert run.model.net.layers[3].running_mean.abs().max() > 0  # BatchNorm kept running statistics


def test_params_of_refuses_an_mlp_it_does_not_derive():
    with pytest.raises(ValueError, match="one hidden layer"):
        Params.of(MLP(MLPConfig(n_layer=2, batchnorm=True)))


def test_module_builds_on_the_model_and_the_data_not_the_engine():
    tree = ast.parse(Path(backprop.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {f"nanogpt.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "nanogpt" for a in node.names}
    assert {m for m in imported if m.startswith("nanogpt.")} <= {
        "nanogpt.cli", "nanogpt.data", "nanogpt.errors", "nanogpt.mlp", "nanogpt.tokenizer"}
