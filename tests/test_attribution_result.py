"""The attribution result: completeness checks and warnings, save and load."""

import numpy as np
import pytest
import torch

from nanogpt.attribution.methods import attribute_text
from nanogpt.attribution.result import Attribution
from nanogpt.errors import UserError
from nanogpt.gpt import GPT, GPTConfig
from nanogpt.tokenizer import CharTokenizer


def small_result(**options):
    text = 'a<script>&"\' b\nc'
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=1, n_embd=8))
    return attribute_text(model.double(), tok, text, **options)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
@pytest.mark.parametrize("options", [dict(steps=4), dict(tol=1e-6, steps=2), dict(method="saliency")])
def test_save_and_load_round_trip(tmp_path, suffix, options):
    r = small_result(**options)
    r.save(tmp_path / f"r{suffix}")
    back = Attribution.load(tmp_path / f"r{suffix}")
    assert back.tokens == r.tokens and back.settings == r.settings
    for field in ("targets", "scores", "f_input", "f_baseline", "delta"):
        assert np.array_equal(getattr(back, field), getattr(r, field))
    for field in ("steps_used", "capped"):  # how each target was integrated travels too
        mine, theirs = getattr(r, field), getattr(back, field)
        assert (mine is None and theirs is None) or np.array_equal(mine, theirs), field
    if "tol" in options:
        assert back.capped is not None and back.steps_used.max() > 2


def test_completeness_warning_names_the_worst_target_and_the_remedy():
    scores = np.array([[0.5, 0.5, 0.0], [0.2, 0.2, 0.0]])  # sums 1.0 and 0.4
    good = Attribution(list("abc"), np.array([1, 2]), scores, np.array([1.0, 0.4]), np.zeros(2),
                       {"method": "ig", "steps": 32})
    assert good.completeness_warning() == ""
    bad = Attribution(list("abc"), np.array([1, 2]), scores, np.array([1.0, 0.8]), np.zeros(2),
                      {"method": "ig", "steps": 32})
    warning = bad.completeness_warning()
    assert "1 of 2 targets" in warning and "position 2" in warning and "steps" in warning
    assert "--tol" in warning
    bad.settings["method"] = "saliency"  # no completeness to expect
    assert bad.completeness_warning() == ""


def test_the_worst_target_named_is_one_that_fails():
    # target 1: dF tiny, gap under the 1e-3 floor (passes, though its ratio is 10); target 2 fails
    scores = np.array([[1e-5, 0.0, 0.0], [0.6, 0.6, 0.0]])
    result = Attribution(list("abc"), np.array([1, 2]), scores, np.array([1e-6, 1.0]), np.zeros(2),
                         {"method": "ig", "steps": 32})
    assert "1 of 2 targets" in result.completeness_warning()
    assert "position 2" in result.completeness_warning()


def test_integrated_to_a_tolerance_the_warning_names_only_the_capped_targets():
    scores = np.array([[0.5, 0.5, 0.0, 0.0], [0.2, 0.2, 0.0, 0.0], [0.1, 0.1, 0.1, 0.0]])
    settings = {"method": "ig", "tol": 0.05, "abs_tol": 1e-3, "max_steps": 64, "steps": 8}
    r = Attribution(list("abcd"), np.array([1, 2, 3]), scores, np.array([1.0, 0.8, 0.3]), np.zeros(3),
                    settings, steps_used=np.array([8, 64, 16]), capped=np.array([False, True, False]))
    warning = r.completeness_warning()
    assert "1 of 3 targets" in warning and "cap of 64" in warning and "2 'c'" in warning
    assert "3 'd'" not in warning  # within tolerance, so not named
    assert r.incomplete().tolist() == [False, True, False]  # the settings' tolerance is the test
    r.capped[:] = False
    assert r.completeness_warning() == ""


def test_a_broken_result_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"tokens": ["a"]}')
    with pytest.raises(UserError, match="not an attribution result"):
        Attribution.load(path)
