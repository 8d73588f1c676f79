import pytest
import torch

from nanogpt.config import preset
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.sample import (
    NextTokenLogits,
    apply_temperature,
    context_window,
    generate,
    gumbel_noise,
    gumbel_softmax,
    main,
    next_token,
    sample_gumbel,
    top_k_filter,
    top_p_filter,
)

VOCAB = 11



def tiny_gpt(block_size=16, dtype=torch.float64):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, block_size=block_size, n_layer=2, n_head=2, n_embd=16)
    return GPT(cfg).to(dtype).eval()


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the window


def test_window_holds_everything_up_to_block_size_then_between_keep_and_block_size():
    block, keep = 8, 3
    assert [context_window(n, block, keep) for n in range(1, 9)] == [0] * 8
    widths = [n - context_window(n, block, keep) for n in range(9, 30)]
    assert widths[:8] == [3, 4, 5, 6, 7, 8, 3, 4]  # restart from `keep`, grow back to `block`
    assert all(keep <= w <= block for w in widths)


def test_window_with_keep_equal_to_block_size_is_nanogpt_crop():
    assert all(n - context_window(n, 8, 8) == min(n, 8) for n in range(1, 40))


def test_decoder_with_full_keep_matches_nanogpt_crop_logits():
    m = tiny_gpt(block_size=8)
    idx = torch.randint(VOCAB, (2, 30), generator=seeded())
    next_logits = NextTokenLogits(m, keep=8)
    for t in range(1, 31):
        expected = m(idx[:, :t][:, -8:])[0][:, -1]  # nanoGPT: crop, run, take the last position
        assert torch.allclose(next_logits(idx[:, :t]), expected, atol=1e-12)


# ----------------------------------------------------------------------------- the KV cache


@pytest.mark.parametrize("keep", [1, 5, 8, 16])
def test_cached_logits_match_uncached_at_every_step_past_block_size(keep):
    m = tiny_gpt(block_size=16, dtype=torch.float32)
    idx = torch.randint(VOCAB, (3, 70), generator=seeded())  # several window restarts
    cached, uncached = NextTokenLogits(m, keep=keep), NextTokenLogits(m, keep=keep, use_cache=False)
    for t in range(1, 71):
        a, b = cached(idx[:, :t]), uncached(idx[:, :t])
        assert (a - b).abs().max() < 1e-5, f"step {t}"


def test_cache_is_rebuilt_only_when_the_window_restarts():
    m = tiny_gpt(block_size=16)
    next_logits, idx = NextTokenLogits(m, keep=4), torch.zeros(1, 40, dtype=torch.long)
    caches = []
    for t in range(1, 41):
        next_logits(idx[:, :t])
        assert next_logits.cache.length == t - context_window(t, 16, 4) <= 16
        caches.append(next_logits.cache)
    rebuilds = sum(caches[i] is not caches[i - 1] for i in range(1, len(caches)))
    assert rebuilds == 2  # at 17 (width back to 4) and at 30 (16 - 4 + 1 = 13 steps later)


@pytest.mark.parametrize("greedy", [True, False])
def test_generation_is_the_same_with_and_without_cache_over_500_steps(greedy):
    m = tiny_gpt(block_size=16)
    prompt = torch.randint(VOCAB, (2, 5), generator=seeded())
    runs = [generate(m, prompt, 500, greedy=greedy, generator=seeded(1), use_cache=c)
            for c in (True, False)]
    assert runs[0].shape == (2, 505)
    assert torch.equal(runs[0], runs[1])


def test_seeded_generation_is_reproducible_and_the_seed_matters():
    m = tiny_gpt()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a, b, c = (generate(m, prompt, 50, generator=seeded(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_long_prompt_is_returned_whole_but_the_model_sees_its_last_block():
    m = tiny_gpt(block_size=8)
    prompt = torch.randint(VOCAB, (1, 20), generator=seeded())
    out = generate(m, prompt, 5, greedy=True)
    assert torch.equal(out[:, :20], prompt)
    assert torch.equal(out[:, 12:], generate(m, prompt[:, -8:], 5, greedy=True))


def test_generate_drives_every_stage_from_a_one_token_prompt():
    from nanogpt.bigram import BigramConfig, CountBigram, NeuralBigram
    from nanogpt.mlp import MLP, MLPConfig

    models = [CountBigram(VOCAB).fit([torch.randint(VOCAB, (200,), generator=seeded())]),
              NeuralBigram(BigramConfig(VOCAB)),
              MLP(MLPConfig(VOCAB, block_size=4, batchnorm=True), generator=seeded()),  # pads the prompt
              tiny_gpt()]
    for model in models:
        out = generate(model, torch.zeros(3, 1, dtype=torch.long), 12, generator=seeded(1))
        assert out.shape == (3, 13) and out.min() >= 0 and out.max() < VOCAB, type(model).__name__


def test_generate_restores_training_mode():
    m = tiny_gpt().train()
    generate(m, torch.zeros(1, 1, dtype=torch.long), 3)
    assert m.training


# ----------------------------------------------------------------------------- shaping the logits


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 2.0, 3.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.tolist() == [[False, True, False, True]]
    assert torch.equal(top_k_filter(logits, 10), logits)


@pytest.mark.parametrize("p, kept", [(0.1, 1), (0.5, 1), (0.75, 2), (0.81, 3), (0.96, 4), (1.0, 4)])
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]], dtype=torch.float64)
    out = top_p_filter(probs.log(), p)
    order = [1, 3, 2, 0]  # most likely first
    assert torch.isfinite(out[0, order[:kept]]).all()
    assert torch.isinf(out[0, order[kept:]]).all()
    assert torch.equal(out[0, order[:kept]], probs.log()[0, order[:kept]])


def test_top_p_keeps_ties_with_the_last_kept_token_and_p_one_keeps_all():
    logits = torch.tensor([[2.0, 1.0, 1.0, 0.0]])  # the two middle tokens tie
    kept = torch.isfinite(top_p_filter(logits, 0.7))  # the top one alone has about 0.57
    assert kept.tolist() == [[True, True, True, False]]
    many = torch.randn(3, 65)
    assert torch.equal(top_p_filter(many, 1.0), many)


def test_a_tiny_temperature_gives_the_argmax_not_nan():
    logits = torch.tensor([[0.1, 2.0, 0.3]])
    shaped = apply_temperature(logits, 1e-40)
    assert not torch.isnan(shaped).any() and shaped[0, 1] == 0
    assert next_token(logits, temperature=1e-40, generator=torch.Generator().manual_seed(0)).item() == 1


def test_greedy_is_argmax_and_ignores_temperature():
    logits = torch.tensor([[0.1, 2.0, 0.3], [5.0, 1.0, 4.9]])
    assert next_token(logits, greedy=True, temperature=7.0).tolist() == [[1], [0]]


def test_low_temperature_approaches_greedy():
    logits = torch.tensor([[0.0, 1.0, 0.5]]).expand(1000, 3)
    draws = next_token(logits, temperature=0.01, generator=seeded())
    assert (draws == 1).all()


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_k=0), dict(top_p=0.0),
                                 dict(top_p=1.5), dict(sampler="beam")])
def test_bad_sampling_options_raise_a_user_error(bad):
    with pytest.raises(UserError):
        generate(tiny_gpt(), torch.zeros(1, 1, dtype=torch.long), 1, **bad)


# ----------------------------------------------------------------------------- Gumbel


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


CHI2_5DOF_P001 = 20.515  # the chi-square critical value for 5 degrees of freedom at p = 0.001


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gumbel_max_draws_follow_the_softmax(temperature):
    probs = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.07, 0.03], dtype=torch.float64)
    n = 200_000
    logits = probs.log().expand(n, 6)
    draws = next_token(logits, temperature=temperature, sampler="gumbel", generator=seeded(3))
    counts = torch.bincount(draws.flatten(), minlength=6).double()
    target = torch.softmax(probs.log() / temperature, dim=0)
    assert chi_square(counts, target) < CHI2_5DOF_P001
    assert chi_square(counts, probs.flip(0)) > 100  # and the test does reject a wrong distribution


def test_gumbel_max_and_multinomial_agree_with_each_other():
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5, 2.0, -0.5], dtype=torch.float64).expand(100_000, 6)
    g = torch.bincount(next_token(logits, sampler="gumbel", generator=seeded(4)).flatten(), minlength=6)
    m = torch.bincount(next_token(logits, generator=seeded(5)).flatten(), minlength=6)
    # a two-sample chi-square test: both counts from one distribution, 5 degrees of freedom
    g, m = g.double(), m.double()
    stat = float(((g - m) ** 2 / (g + m)).sum())
    assert stat < CHI2_5DOF_P001


def test_gumbel_noise_is_drawn_from_the_generator():
    assert torch.equal(gumbel_noise((4, 5), seeded(7)), gumbel_noise((4, 5), seeded(7)))
    assert torch.isfinite(gumbel_noise((10_000,), seeded(7))).all()


def test_hard_gumbel_softmax_is_the_gumbel_max_choice_for_the_same_noise():
    logits = torch.randn(50, 7, generator=seeded(), dtype=torch.float64)
    noise = gumbel_noise(logits.shape, seeded(8), torch.float64)
    hard = gumbel_softmax(logits, tau=0.7, hard=True, noise=noise)
    assert torch.equal(hard.argmax(-1, keepdim=True), torch.argmax(logits + noise, -1, keepdim=True))
    assert torch.equal(hard.sum(-1), torch.ones(50, dtype=torch.float64))
    assert torch.equal(hard.argmax(-1, keepdim=True), sample_gumbel(logits, seeded(8)))


def test_hard_gumbel_softmax_passes_the_soft_gradient_straight_through():
    logits = torch.randn(3, 5, generator=seeded(), dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise(logits.shape, seeded(9), torch.float64)
    weights = torch.arange(5, dtype=torch.float64)
    (gumbel_softmax(logits, 0.5, hard=True, noise=noise) * weights).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    (gumbel_softmax(logits, 0.5, noise=noise) * weights).sum().backward()
    assert torch.allclose(hard_grad, logits.grad)


def test_gumbel_softmax_approaches_one_hot_as_tau_goes_to_zero():
    logits = torch.randn(20, 6, generator=seeded(), dtype=torch.float64)
    noise = gumbel_noise(logits.shape, seeded(10), torch.float64)
    choice = torch.argmax(logits + noise, -1)
    gaps = []
    for tau in (10.0, 1.0, 0.1, 0.001):
        soft = gumbel_softmax(logits, tau, noise=noise)
        assert torch.allclose(soft.sum(-1), torch.ones(20, dtype=torch.float64))
        gaps.append(float((soft - torch.nn.functional.one_hot(choice, 6)).abs().max()))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3


# ----------------------------------------------------------------------------- the command line

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nO Romeo, Romeo!\n" * 40
TINY = {"gpt": ("smoke", dict(block_size=16, batch_size=4)), "bigram": ("bigram", {}),
        "mlp": ("mlp", dict(block_size=3, n_hidden=32))}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A checkpoint of each stage, trained for 3 steps on a tiny text by the engine."""
    from nanogpt.train import train

    root = tmp_path_factory.mktemp("runs")
    (root / "text.txt").write_text(TEXT)
    paths = {}
    for stage, (name, overrides) in TINY.items():
        cfg = preset(name, max_iters=3, eval_interval=3, eval_iters=1, device="cpu", threads=1,
                     data=str(root / "text.txt"), out_dir=str(root / stage), **overrides)
        paths[stage] = str(train(cfg, progress=False)["out_dir"])
    return paths


def sample_cli(capsys, *args):
    code = main([*args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("stage", ["gpt", "bigram", "mlp"])
def test_cli_samples_every_stage_as_one_batch(checkpoints, capsys, stage):
    code, out, err = sample_cli(capsys, "--ckpt", checkpoints[stage], "--prompt", "ROMEO:",
                                "--num-samples", "3", "--max-new-tokens", "40")
    assert code == 0
    assert out.count("---------- sample") == 3
    assert out.count("\nROMEO:") == 3


@pytest.mark.parametrize("flags", [["--greedy"], ["--top-k", "5", "--top-p", "0.9"],
                                   ["--sampler", "gumbel", "--temperature", "0.7"]])
def test_cli_gives_the_same_text_with_and_without_cache(checkpoints, capsys, flags):
    args = ["--ckpt", checkpoints["gpt"], "--max-new-tokens", "60", "--seed", "3", *flags]
    cached, uncached = sample_cli(capsys, *args), sample_cli(capsys, *args, "--no-cache")
    assert cached[0] == 0 and cached == uncached


def test_cli_seed_makes_samples_reproducible(checkpoints, capsys):
    args = ["--ckpt", checkpoints["gpt"], "--max-new-tokens", "40"]
    a, b = sample_cli(capsys, *args, "--seed", "1"), sample_cli(capsys, *args, "--seed", "1")
    c = sample_cli(capsys, *args, "--seed", "2")
    assert a == b and a[1] != c[1]


def test_cli_empty_prompt_starts_from_a_newline(checkpoints, capsys):
    code, out, _ = sample_cli(capsys, "--ckpt", checkpoints["gpt"], "--num-samples", "1",
                              "--max-new-tokens", "25")
    sample, source = out.split("----------\n", 1)[1].split("\n(from ")
    assert code == 0 and len(sample) == 25  # the new characters, then which checkpoint wrote them
    assert source.startswith(f"{checkpoints['gpt']}/best.pt: gpt, iter ")


def test_cli_reads_the_prompt_from_a_file(checkpoints, capsys, tmp_path):
    (tmp_path / "p.txt").write_text("JULIET:\n")
    code, out, _ = sample_cli(capsys, "--ckpt", checkpoints["gpt"], "--prompt-file",
                              str(tmp_path / "p.txt"), "--num-samples", "1", "--max-new-tokens", "5")
    assert code == 0 and "\nJULIET:\n" in out


def test_cli_lists_prompt_characters_outside_the_vocabulary(checkpoints, capsys):
    code, out, err = sample_cli(capsys, "--ckpt", checkpoints["gpt"], "--prompt", "ROMEO@#")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "'#' '@'" in err


def test_cli_crops_a_long_prompt_with_a_notice(checkpoints, capsys):
    code, out, err = sample_cli(capsys, "--ckpt", checkpoints["gpt"], "--prompt", "ROMEO: " * 5,
                                "--num-samples", "1", "--max-new-tokens", "5")
    assert code == 0 and "ROMEO: " * 5 in out
    assert "prompt has 35 tokens" in err and "last 16" in err


def test_cli_missing_checkpoint_says_to_train_first(tmp_path, capsys):
    code, _, err = sample_cli(capsys, "--ckpt", str(tmp_path / "none.pt"))
    assert code == 2 and "make train" in err


@pytest.mark.parametrize("bad", [["--temperature", "0"], ["--num-samples", "0"], ["--sampler", "beam"],
                                 ["--top-k", "x"]])
def test_cli_bad_flags_are_one_line_errors(checkpoints, capsys, bad):
    code, _, err = sample_cli(capsys, "--ckpt", checkpoints["gpt"], *bad)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
