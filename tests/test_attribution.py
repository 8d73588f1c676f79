"""The attribution lens: integrated gradients (fixed rule), saliency, gradient * input, occlusion."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from nanogpt.attribution.methods import attribute, attribute_loop, attribute_text
from nanogpt.attribution.paths import RULES, quadrature
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.tokenizer import CharTokenizer


class CumulativeLinearLM(nn.Module):
    """logits at t = (sum of the embeddings up to t) @ W: causal, and linear in the embeddings.

    The logit of c_t read at position t-1 has gradient W[c_t] with respect to every embedding in
    its window, so every score can be written down by hand.
    """

    def __init__(self, vocab_size=6, block_size=5, n_embd=3):
        super().__init__()
        torch.manual_seed(0)
        self.config = SimpleNamespace(vocab_size=vocab_size, block_size=block_size)
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.double()

    def forward(self, idx=None, targets=None, *, tok_emb=None, pos_emb=None, cache=None):
        if tok_emb is None:
            tok_emb = self.wte(idx)
        if pos_emb is None:
            pos_emb = self.wpe(torch.arange(tok_emb.shape[1]))
        return self.head((tok_emb + pos_emb).cumsum(dim=1)), None


def tiny_gpt(dtype=torch.float64, block_size=8, **shape):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=12, block_size=block_size, n_layer=2, n_head=2, n_embd=16, **shape)
    return GPT(cfg).to(dtype).eval()


@pytest.fixture(scope="module")
def trained(smoke_ckpt):
    """The smoke preset's GPT after its 100 training steps, in float64, with its tokenizer."""
    from nanogpt.checkpoint import load_model

    model, tokenizer, _ = load_model(smoke_ckpt)
    return model.double(), tokenizer


TEXT = "ROMEO:\nBut soft, what light"


# ----------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("steps", [1, 3, 8])
def test_ig_equals_gradient_times_input_difference_on_a_linear_model(rule, steps):
    model = CumulativeLinearLM()
    ids = torch.tensor([0, 3, 1, 5, 2, 2, 4, 0, 1])  # longer than block_size 5: windows slide
    for baseline in ("zero", 4):
        r = attribute(model, ids, target="logit", rule=rule, steps=steps, baseline=baseline)
        b = torch.zeros(3, dtype=torch.float64) if baseline == "zero" else model.wte.weight[4]
        for i, t in enumerate(r.targets):
            start = max(0, t - 5)
            x = model.wte(ids[start:t])  # (L, C)
            expected = ((x - b) @ model.head.weight[ids[t]]).detach().numpy()
            assert np.allclose(r.scores[i, start:t], expected, atol=1e-12)
            assert np.all(r.scores[i, :start] == 0) and np.all(r.scores[i, t:] == 0)
        assert np.abs(r.delta).max() < 1e-12


def test_quadrature_weights_sum_to_one_and_integrate_a_line():
    for rule in RULES:
        alphas, weights = quadrature(rule, 5)
        assert abs(weights.sum() - 1) < 1e-14 and np.all((0 <= alphas) & (alphas <= 1))
    for rule in ("gauss-legendre", "middle", "trapezoid"):  # exact for a + b x
        alphas, weights = quadrature(rule, 4)
        assert abs((weights * (2 + 3 * alphas)).sum() - 3.5) < 1e-14
    alphas, weights = quadrature("gauss-legendre", 3)  # and Gauss-Legendre up to degree 5
    assert abs((weights * alphas**5).sum() - 1 / 6) < 1e-14


@pytest.mark.parametrize("options", [
    dict(),
    dict(target="prob", baseline=" "),
    dict(interpolate_positions=True, baseline="mean"),  # not from zero: see the module's notes
])
def test_completeness_holds_on_a_trained_gpt_with_the_fixed_gauss_legendre_rule(trained, options):
    model, tok = trained
    r = attribute_text(model, tok, TEXT, steps=32, **options)
    assert r.settings["integration"] == "fixed" and r.capped is None and np.all(r.steps_used == 32)
    assert np.all(np.abs(r.delta) <= 1e-3 * np.abs(r.dF)), (r.delta, r.dF)


@pytest.mark.parametrize("rule", ["middle", "trapezoid"])
def test_delta_shrinks_as_steps_grow(trained, rule):
    model, tok = trained
    gaps = [np.abs(attribute_text(model, tok, TEXT[:12], rule=rule, steps=n).delta).sum()
            for n in (2, 8, 32)]
    assert gaps[0] > gaps[1] > gaps[2], gaps


@pytest.mark.parametrize("options", [
    dict(steps=8),
    dict(method="saliency"),
    dict(method="grad-input", aggregate="norm"),
    dict(rule="trapezoid", steps=5, baseline="mean", target="prob"),
    dict(steps=4, interpolate_positions=True, target="logit"),
])
def test_batched_result_equals_the_per_character_loop(options):
    ids = torch.randint(12, (20,), generator=torch.Generator().manual_seed(1))  # 20 > block 8
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = tiny_gpt(dtype)
        fast, slow = attribute(model, ids, **options), attribute_loop(model, ids, **options)
        for field in ("scores", "f_input", "f_baseline"):
            assert np.allclose(getattr(fast, field), getattr(slow, field), rtol=0, atol=tol), field


def test_scores_at_or_after_the_target_and_before_its_window_are_exactly_zero():
    r = attribute(tiny_gpt(), torch.arange(12).repeat(2), steps=4)  # 24 characters, block 8
    for i, t in enumerate(r.targets):
        assert np.all(r.scores[i, t:] == 0) and np.all(r.scores[i, :max(0, t - 8)] == 0)
        assert np.all(r.scores[i, max(0, t - 8):t] != 0)


def test_batch_size_does_not_change_the_result():
    model, ids = tiny_gpt(), torch.arange(12).repeat(2)
    results = [attribute(model, ids, steps=6, batch_size=n).scores for n in (1, 7, 10_000)]
    assert np.allclose(results[0], results[1], atol=1e-13, rtol=0)
    assert np.allclose(results[0], results[2], atol=1e-13, rtol=0)


def test_positions_choose_the_targets():
    model, ids = tiny_gpt(), torch.arange(10)
    one = attribute(model, ids, positions=[7], steps=4)
    every = attribute(model, ids, steps=4)
    assert one.targets.tolist() == [7] and every.targets.tolist() == list(range(1, 10))
    assert np.allclose(one.row(7), every.row(7), atol=1e-13)


# ----------------------------------------------------------------------------- the simple methods


def test_saliency_and_gradient_times_input_are_right_by_hand():
    model = CumulativeLinearLM()
    ids = torch.tensor([2, 0, 5, 1])
    x = model.wte(ids).detach()  # (4, C)
    sal = attribute(model, ids, method="saliency", target="logit")
    gxi = attribute(model, ids, method="grad-input", target="logit")
    norm = attribute(model, ids, method="saliency", target="logit", aggregate="norm")
    for i, t in enumerate(sal.targets):
        w = model.head.weight[ids[t]].detach()  # dlogit/dx_s for every s < t
        assert np.allclose(sal.scores[i, :t], w.sum().item(), atol=1e-14)
        assert np.allclose(gxi.scores[i, :t], (x[:t] @ w).numpy(), atol=1e-14)
        assert np.allclose(norm.scores[i, :t], w.norm().item(), atol=1e-14)


def test_saliency_and_gradient_times_input_match_autograd_on_a_gpt():
    model, ids = tiny_gpt(), torch.tensor([3, 1, 4, 1, 5, 9])
    x = model.wte(ids)[None].detach().requires_grad_(True)  # (1, T, C)
    logits, _ = model(tok_emb=x)
    (g,) = torch.autograd.grad(torch.log_softmax(logits[0, 4], -1)[9], x)  # F at t = 5
    assert np.allclose(attribute(model, ids, method="saliency").row(5)[:5], g[0, :5].sum(-1), atol=1e-14)
    assert np.allclose(attribute(model, ids, method="grad-input").row(5)[:5],
                       (g * x)[0, :5].sum(-1).detach(), atol=1e-14)


def test_results_are_deterministic_across_runs():
    model, ids = tiny_gpt(torch.float32), torch.arange(12)
    assert np.array_equal(attribute(model, ids, steps=5).scores, attribute(model, ids, steps=5).scores)


def test_training_flag_and_parameter_grads_are_left_untouched():
    model = tiny_gpt().train()
    model.blocks[0].attn.eval()  # a mixed state must come back as it was
    marker = torch.full_like(model.wte.weight, 7.0)
    model.wte.weight.grad = marker.clone()
    attribute(model, torch.arange(10), steps=3)
    attribute_loop(model, torch.arange(10), steps=3)
    assert model.training and not model.blocks[0].attn.training and model.blocks[1].training
    assert torch.equal(model.wte.weight.grad, marker)
    assert all(p.grad is None for n, p in model.named_parameters() if n != "wte.weight")


def test_a_rotary_gpt_is_attributed_over_its_token_embeddings_alone():
    ids = torch.randint(12, (20,), generator=torch.Generator().manual_seed(1))
    model = tiny_gpt(position="rotary", qk_norm=True)
    fast, slow = attribute(model, ids, steps=8), attribute_loop(model, ids, steps=8)
    assert np.allclose(fast.scores, slow.scores, rtol=0, atol=1e-10)
    exact = attribute(model, ids, steps=64)
    assert np.all(np.abs(exact.delta) <= 1e-6 * np.abs(exact.dF).clip(min=1e-3)), exact.delta
    with pytest.raises(UserError, match="no position embeddings to interpolate"):
        attribute(model, ids, interpolate_positions=True)


@pytest.mark.parametrize("call, message", [
    (lambda m: attribute(m, [1, 2, 3], steps=0), "steps must be at least 1"),
    (lambda m: attribute(m, [1, 2, 3], method="lime"), "method must be one of"),
    (lambda m: attribute(m, [1, 2, 3], rule="simpson"), "rule must be one of"),
    (lambda m: attribute(m, [1, 2, 3], positions=[0]), "target positions must lie in 1..2"),
    (lambda m: attribute(m, [4]), "at least two characters"),
    (lambda m: attribute(m, [1, 2], baseline="space"), "baseline must be"),
    (lambda m: attribute(m, [1, 2], batch_size=0), "batch size"),
    (lambda m: attribute(m, [1, 2], tol=-0.1), "tolerances must be at least 0"),
    (lambda m: attribute(m, [1, 2], tol=0, abs_tol=0), "not both 0"),
    (lambda m: attribute(m, [1, 2], steps=16, tol=0.1, max_steps=8), "max steps"),
    (lambda m: attribute(m, [1, 2], pieces=0), "pieces must be at least 1"),
    (lambda m: attribute_loop(m, [1, 2], tol=0.1), "fixed rule"),
    (lambda m: attribute_text(m, CharTokenizer("abc"), ""), "empty"),
    (lambda m: attribute_text(m, CharTokenizer("abc"), "abz"), "not in the vocabulary"),
    (lambda m: attribute(nn.Linear(2, 2), [1, 2]), "needs a GPT"),
])
def test_user_mistakes_are_one_line_errors(call, message):
    with pytest.raises(UserError, match=message) as e:
        call(tiny_gpt())
    assert "\n" not in str(e.value)


def test_a_character_baseline_is_that_characters_embedding():
    model = CumulativeLinearLM()
    tok = CharTokenizer("abcdef")
    r = attribute_text(model, tok, "badcafe", baseline="f", target="logit")
    again = attribute(model, tok.encode("badcafe"), baseline=5, target="logit")
    assert r.settings["baseline"] == "f" and np.array_equal(r.scores, again.scores)


# ----------------------------------------------------------------------------- occlusion


def test_occlusion_is_the_change_of_F_when_one_character_becomes_the_baseline():
    model, ids = tiny_gpt(), torch.randint(12, (14,), generator=torch.Generator().manual_seed(2))
    r = attribute(model, ids, method="occlusion", baseline="mean", positions=[3, 8, 13])  # 13: cut window
    base = model.wte.weight.mean(0).detach()

    def F(emb, t):
        logits, _ = model(tok_emb=emb[None])
        return torch.log_softmax(logits[0, -1], -1)[ids[t]].item()

    for i, t in enumerate([3, 8, 13]):
        start = max(0, t - 8)
        x = model.wte(ids[start:t]).detach()
        assert abs(r.f_input[i] - F(x, t)) < 1e-12
        for s in range(start, t):
            left_out = x.clone()
            left_out[s - start] = base
            assert abs(r.scores[i, s] - (F(x, t) - F(left_out, t))) < 1e-12
        assert np.all(r.scores[i, :start] == 0) and np.all(r.scores[i, t:] == 0)


def test_occlusion_equals_integrated_gradients_on_a_linear_model():
    model, ids = CumulativeLinearLM(), torch.tensor([0, 3, 1, 5, 2, 2, 4, 0, 1])
    occ = attribute(model, ids, method="occlusion", target="logit", baseline=4)
    ig = attribute(model, ids, target="logit", baseline=4, steps=2)
    assert np.allclose(occ.scores, ig.scores, atol=1e-12)
