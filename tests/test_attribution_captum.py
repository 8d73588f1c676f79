"""The lens against Captum: integrated gradients, saliency and gradient * input agree to 1e-6.

Captum keeps its quadrature weights (and its Riemann points) in float32, so in float64 its
scores differ from the lens's by ~1e-7 relative; everything else is the same arithmetic. The
comparisons run in float64 on a small random GPT whose block (8) is shorter than the text (20),
so that some targets' windows are cut by it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nanogpt.attribution.methods import attribute
from nanogpt.gpt import GPT, GPTConfig

captum_attr = pytest.importorskip("captum.attr")

BLOCK = 8
TARGETS = [1, 3, 7, 8, 9, 13, 19]  # 9, 13 and 19 see only the last 8 characters
RULES = {"gauss-legendre": "gausslegendre", "left": "riemann_left", "right": "riemann_right",
         "middle": "riemann_middle"}  # Captum's "trapezoid" weighs n points 1/n: not a trapezoid


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=12, block_size=BLOCK, n_layer=2, n_head=2, n_embd=16)
    model = GPT(cfg).double().eval()
    ids = torch.randint(12, (20,), generator=torch.Generator().manual_seed(3))
    return model, ids


def window(model, ids, t):
    """Target t's context embeddings (1, L, C), its position embeddings, and F on a batch of them."""
    start = max(0, t - BLOCK)
    with torch.no_grad():
        x = model.wte(ids[start:t])[None]
        pos = model.wpe(torch.arange(t - start))

    def forward(emb):  # (B, L, C) token embeddings -> (B,) log p(ids[t])
        logits, _ = model(tok_emb=emb, pos_emb=pos)
        return F.log_softmax(logits[:, -1], dim=-1)[:, ids[t]]

    return x, start, forward


def close(ours, theirs, rtol=1e-6, scale=None):
    """Agreement relative to the largest score of the row (or to `scale`)."""
    scale = np.abs(theirs).max() if scale is None else scale
    return np.abs(ours - theirs).max() <= rtol * scale, np.abs(ours - theirs).max() / scale


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_equal_captums(gpt, rule, baseline):
    model, ids = gpt
    steps = 16
    ours = attribute(model, ids, positions=TARGETS, steps=steps, rule=rule, baseline=baseline)
    ig = captum_attr.IntegratedGradients(window(model, ids, 1)[2])
    for i, t in enumerate(TARGETS):
        x, start, forward = window(model, ids, t)
        ig.forward_func = forward
        base = torch.zeros_like(x) if baseline == "zero" else model.wte.weight.detach().mean(0).expand_as(x)
        attr, delta = ig.attribute(x, baselines=base, n_steps=steps, method=RULES[rule],
                                   return_convergence_delta=True)
        ok, err = close(ours.scores[i, start:t], attr[0].sum(-1).numpy())
        assert ok, (t, err)
        assert abs(ours.delta[i] - delta.item()) <= 1e-6 * abs(ours.dF[i]) + 1e-12
        assert np.all(ours.scores[i, :start] == 0) and np.all(ours.scores[i, t:] == 0)


def test_integrated_gradients_equal_captums_layer_ig_with_a_token_baseline(gpt):
    """LayerIntegratedGradients on model.wte walks the same path: from a token's embedding."""
    model, ids = gpt
    space = 5
    ours = attribute(model, ids, positions=TARGETS, steps=20, baseline=space)
    for i, t in enumerate(TARGETS):
        start = max(0, t - BLOCK)

        def forward(idx, t=t):  # (B, L) ids -> (B,) log p(ids[t]); positions from 0, as in the lens
            logits, _ = model(idx)
            return F.log_softmax(logits[:, -1], dim=-1)[:, ids[t]]

        lig = captum_attr.LayerIntegratedGradients(forward, model.wte)
        window_ids = ids[start:t][None]
        attr = lig.attribute(window_ids, baselines=torch.full_like(window_ids, space), n_steps=20)
        ok, err = close(ours.scores[i, start:t], attr[0].sum(-1).detach().numpy())
        assert ok, (t, err)


def test_adaptive_integration_reaches_the_integral_captum_converges_to(gpt):
    model, ids = gpt
    ours = attribute(model, ids, positions=TARGETS, tol=1e-10, abs_tol=1e-12, steps=4)
    assert not ours.capped.any() and ours.steps_used.max() > 16  # it had to refine
    ig = captum_attr.IntegratedGradients(window(model, ids, 1)[2])
    for i, t in enumerate(TARGETS):
        x, start, forward = window(model, ids, t)
        ig.forward_func = forward
        attr = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=64)  # converged on this model
        ok, err = close(ours.scores[i, start:t], attr[0].sum(-1).numpy())
        assert ok, (t, err)


@pytest.mark.parametrize("aggregate", ["sum", "norm"])
def test_saliency_and_gradient_times_input_equal_captums(gpt, aggregate):
    model, ids = gpt
    sal = attribute(model, ids, positions=TARGETS, method="saliency", aggregate=aggregate)
    gxi = attribute(model, ids, positions=TARGETS, method="grad-input", aggregate=aggregate)
    reduce = (lambda a: a.sum(-1)) if aggregate == "sum" else (lambda a: a.norm(dim=-1))
    for i, t in enumerate(TARGETS):
        x, start, forward = window(model, ids, t)
        grad = captum_attr.Saliency(forward).attribute(x, abs=False)  # signed, as the lens's sum
        times_input = captum_attr.InputXGradient(forward).attribute(x)
        # Summed over C the gradient is ~0: the embedding first meets a LayerNorm, which removes
        # the mean over C. So compare against the size of the gradient itself.
        scale = grad.abs().max().item()
        assert close(sal.scores[i, start:t], reduce(grad[0]).numpy(), rtol=1e-12, scale=scale)[0]
        assert close(gxi.scores[i, start:t], reduce(times_input[0]).detach().numpy(), rtol=1e-12,
                     scale=(times_input.abs().max().item()))[0]
        if aggregate == "norm":  # Captum's default, abs=True, has the same norm
            unsigned = captum_attr.Saliency(forward).attribute(x)[0]
            assert close(sal.scores[i, start:t], reduce(unsigned).numpy(), rtol=1e-12)[0]
