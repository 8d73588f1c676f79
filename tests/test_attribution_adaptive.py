"""Integrated gradients to a tolerance: only the targets, and the pieces of their paths, that miss."""

import numpy as np
import pytest
import torch
from test_attribution import TEXT, CumulativeLinearLM, tiny_gpt, trained  # noqa: F401  (a fixture)

from nanogpt.attribution.methods import attribute, attribute_text
from nanogpt.attribution.paths import FIRST_PIECES, SEGMENT_STEPS

FIRST = SEGMENT_STEPS * FIRST_PIECES  # the points every target starts with


def test_by_default_every_target_ends_within_its_tolerance(trained):  # noqa: F811
    model, tok = trained
    r = attribute_text(model, tok, TEXT)
    s = r.settings
    assert s["integration"] == "adaptive" and s["tol"] == 0.05 and s["steps"] == SEGMENT_STEPS
    assert not r.capped.any() and np.all(r.steps_used >= FIRST)
    assert np.all(np.abs(r.delta) <= np.maximum(0.05 * np.abs(r.dF), 1e-3))
    assert r.completeness_warning() == "" and not r.incomplete().any()


def test_only_the_targets_the_first_rule_misses_are_refined(trained):  # noqa: F811
    model, tok = trained
    ids = tok.encode(TEXT)
    fixed = attribute(model, ids, steps=4)  # from one piece, the adaptive scheme starts with this rule
    adaptive = attribute(model, ids, steps=4, tol=0.01, pieces=1)
    misses = fixed.incomplete(0.01)
    assert misses.any() and not misses.all()  # the text has both kinds
    assert np.all(adaptive.steps_used[~misses] == 4) and np.all(adaptive.steps_used[misses] > 4)
    assert np.allclose(adaptive.scores[~misses], fixed.scores[~misses], rtol=0, atol=1e-12)
    assert not adaptive.incomplete().any()


def test_a_tighter_tolerance_costs_more_points_and_gives_a_smaller_delta(trained):  # noqa: F811
    model, tok = trained
    loose, tight = (attribute_text(model, tok, TEXT[:16], tol=tol, abs_tol=1e-9) for tol in (1e-2, 1e-7))
    assert tight.steps_used.sum() > loose.steps_used.sum()
    assert np.all(np.abs(tight.delta) <= 1e-7 * np.abs(tight.dF) + 1e-9)
    assert np.abs(tight.delta).max() < np.abs(loose.delta).max()


def test_a_linear_model_needs_no_refinement():
    r = attribute(CumulativeLinearLM(), torch.tensor([0, 3, 1, 5, 2, 2, 4, 0, 1]), target="logit", tol=1e-9)
    assert np.all(r.steps_used == FIRST) and np.abs(r.delta).max() < 1e-12


def test_targets_that_reach_the_cap_are_marked_and_named_and_the_others_are_not(trained):  # noqa: F811
    model, tok = trained
    r = attribute_text(model, tok, TEXT, steps=2, tol=1e-6, abs_tol=0, max_steps=12)  # 4 pieces + 1 halving
    assert np.all(r.steps_used <= 12)
    assert r.capped.any()
    within = np.abs(r.delta) <= 1e-6 * np.abs(r.dF)
    assert not np.any(r.capped & within)  # marked only when it missed
    warning = r.completeness_warning()
    assert f"{r.capped.sum()} of {len(r.targets)} targets stopped at the cap of 12" in warning
    first = int(r.targets[np.flatnonzero(r.capped)[0]])
    assert f"{first} {r.tokens[first]!r}" in warning


@pytest.mark.parametrize("change", [dict(batch_size=5), dict(positions=[3, 9, 17])])
def test_batch_size_and_the_other_targets_do_not_change_a_targets_result(change):
    model = tiny_gpt()
    ids = torch.randint(12, (20,), generator=torch.Generator().manual_seed(4))
    options = dict(tol=1e-6, steps=2)
    every = attribute(model, ids, **options)
    other = attribute(model, ids, **{**options, **change})
    for i, t in enumerate(other.targets):
        j = int(np.flatnonzero(every.targets == t)[0])
        assert other.steps_used[i] == every.steps_used[j]
        assert np.allclose(other.scores[i], every.scores[j], rtol=0, atol=1e-12)


def test_float32_reaches_the_tolerance_too():
    model = tiny_gpt(torch.float32)
    r = attribute(model, torch.arange(12).repeat(2), tol=1e-3, abs_tol=1e-5, steps=2)
    assert not r.capped.any() and np.all(np.abs(r.delta) <= np.maximum(1e-3 * np.abs(r.dF), 1e-5) + 1e-6)
